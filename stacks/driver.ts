/**
 * The port between the control plane and whatever realizes a workspace (Pulumi on Hetzner, or the local
 * driver). `runtime/` depends on this file; nothing here may import from `runtime/`.
 */

export type WorkspaceId = string;

/** `start` creates or wakes the box; `stop` hibernates it (volume and bucket stay). */
export type Transition = "start" | "stop";

/** Secrets the control plane generates and owns; a driver hands them to the box at provision time. */
export interface WorkspaceSecrets {
  /** Per-instance token the box agent authenticates with; the control plane stores only its hash. */
  agentToken: string;
  /** `user:password` for ttyd's `--credential`; only the control plane's relay ever sends it. */
  ttydCredential: string;
  /** restic repository password. */
  resticPassword: string;
}

/** Everything a driver needs to realize one workspace. Built from the database row on every build. */
export interface WorkspaceSpec {
  workspaceId: WorkspaceId;
  ownerId: string;
  /** Hetzner location (e.g. `fsn1`); ignored by the local driver. */
  location: string;
  /** Hetzner server type (e.g. `cx22`); ignored by the local driver. */
  serverType: string;
  volumeSizeGb: number;
  /** Base URL the box agent calls home to. */
  controlPlaneUrl: string;
  secrets: WorkspaceSecrets;
  /**
   * W3C `traceparent` of the build: a driver that can hands it to the box at boot (`BERTH_TRACEPARENT`),
   * so the agent's first heartbeat joins the build's trace.
   */
  traceparent?: string;
}

/** What a successful `apply` reports. Addresses stay server-side: never send them to a client. */
export interface WorkspaceOutputs {
  running: boolean;
  serverId: string | null;
  publicIp: string | null;
  volumeId: string;
  /** Port of the box's ttyd-compatible terminal endpoint: 7681 on a VM, chosen per workspace locally. */
  terminalPort: number | null;
  /** Linux device path of the volume on the box (`/dev/disk/by-id/scsi-0HC_Volume_<id>`), or a directory locally. */
  volumeDevice: string;
  bucketName: string | null;
  /** Credentials the driver created (e.g. bucket-scoped R2 keys); the control plane encrypts them at rest. */
  secretOutputs: Record<string, string>;
}

export type BuildLogLevel = "info" | "warn" | "error";

/** Sink for a build's streamed log. `stage` marks the step in progress, for progress indicators. */
export interface BuildLog {
  stage(name: string): void;
  line(level: BuildLogLevel, message: string): void;
}

export type DiffOp = "create" | "update" | "replace" | "delete" | "same";

/** One resource in a plan, in the form operators read: resource, operation and the keys that change. */
export interface ResourceChange {
  /** Logical name, e.g. `server` or `volume`. */
  resource: string;
  /** Provider type token, e.g. `hcloud:index/server:Server`. */
  type: string;
  op: DiffOp;
  changedKeys: string[];
}

export interface StackDiff {
  workspaceId: WorkspaceId;
  changes: ResourceChange[];
}

/** What exists in the cloud (or on this machine) for one workspace, independent of the database. */
export interface ObservedState {
  workspaceId: WorkspaceId;
  running: boolean;
  serverId: string | null;
  publicIp: string | null;
  /** Cloud ids of everything that exists for this workspace, for `forget` to report leaks. */
  resourceIds: string[];
}

/**
 * Drivers whose boxes run as processes on this machine (box address 127.0.0.1). Loopback reaches every
 * process here, so the control plane dials a box's port only when the driver says the listener is the box's.
 */
export interface LocalBoxes {
  /** `workspace`: every socket listening on `port` belongs to workspace `id`; `other`: not all; `none`: no listener. */
  listenerOwner(id: WorkspaceId, port: number): Promise<"workspace" | "other" | "none">;
}

/** A workspace's restic repository as the control plane reads it (list, browse, export while hibernated). */
export interface BackupRepository {
  /** A local path or `s3:<endpoint>/<bucket>[/prefix]`. */
  url: string;
  /** S3 keys; the password is the workspace's own sealed `restic-password`. */
  s3?: { accessKeyId: string; secretAccessKey: string };
  /** Or: the names of this driver's `secretOutputs` that hold the S3 keys (sealed by the control plane). */
  s3SecretOutputs?: { accessKeyId: string; secretAccessKey: string };
}

export interface WorkspaceDriver {
  /** Short name for logs and metrics, e.g. `local` or `pulumi`. */
  readonly name: string;
  /** Set when boxes live on this machine; unset, a loopback box address is refused as an attack. */
  readonly localBoxes?: LocalBoxes;
  apply(
    spec: WorkspaceSpec,
    transition: Transition,
    log: BuildLog,
    signal: AbortSignal,
  ): Promise<WorkspaceOutputs>;
  /** Deletes everything, protected volume and bucket included, and removes the stack. */
  destroy(spec: WorkspaceSpec, log: BuildLog, signal: AbortSignal): Promise<void>;
  /** What `apply(spec, transition)` would change, without changing anything. */
  preview(spec: WorkspaceSpec, transition: Transition): Promise<StackDiff>;
  observe(id: WorkspaceId): Promise<ObservedState | null>;
  /**
   * Everything that exists, in one listing. The reconciler calls this once per tick, so its cost must not
   * grow as one backend operation per workspace.
   */
  observeAll(): Promise<ObservedState[]>;
  /** Operator repair: clear a stale lock and pending operations, then refresh state. */
  repair(id: WorkspaceId, log: BuildLog, signal: AbortSignal): Promise<void>;
  /** Where the workspace's backups are; unset: this driver's backups are readable only on the box. */
  backupRepository?(id: WorkspaceId): BackupRepository;
}
