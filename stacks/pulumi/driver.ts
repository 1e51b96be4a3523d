/**
 * The production `WorkspaceDriver`: one Pulumi stack per workspace (`ws-<id>`), driven through the Automation
 * API with the inline program of `stacks/workspace/`. Inputs reach the program by closure; secrets travel
 * as `pulumi.secret` values and through the CLI's environment, never on its command line.
 */
import { createHmac } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as auto from "@pulumi/pulumi/automation/index.js";
import type {
  BackupRepository,
  BuildLog,
  ObservedState,
  StackDiff,
  Transition,
  WorkspaceDriver,
  WorkspaceId,
  WorkspaceOutputs,
  WorkspaceSpec,
} from "../driver.ts";
import { DriverError, StackBusyError } from "../errors.ts";
import { r2Endpoint } from "../workspace/component.ts";
import type { PortRange } from "../workspace/firewall.ts";
import {
  resourceName,
  stackName,
  TTYD_PORT,
  WORKSPACE_LABEL,
  workspaceIdFromStack,
} from "../workspace/names.ts";
import {
  SECRET_OUTPUTS,
  type WorkspaceProgramInput,
  type WorkspaceStackOutputs,
  workspaceProgram,
} from "../workspace/program.ts";
import { stackDiffFromEvents } from "./diff.ts";
import { toDriverError } from "./errors.ts";
import { engineEventsToLog } from "./events.ts";
import { HETZNER_API_URL, HetznerClient, type HetznerServer } from "./hetzner.ts";
import { emptyBucket, type S3Target } from "./r2.ts";
import { Semaphore } from "./semaphore.ts";

export const PROJECT_NAME = "berth-workspaces";
/** The CrossGuard pack that every `up` and `preview` runs (see stacks/policy/). */
export const DEFAULT_POLICY_PACK = resolve(dirname(fileURLToPath(import.meta.url)), "../policy");

export interface PulumiDriverOptions {
  /** Any Pulumi backend: `s3://bucket?endpoint=…&region=auto` (R2), `file://…`, or Pulumi Cloud. */
  backendUrl: string;
  /** Extra environment for the backend, e.g. `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` for an R2 bucket. */
  backendEnv?: Record<string, string>;
  /** Each stack's secrets passphrase is HMAC-SHA256(master, stack name). Losing it loses the stacks' secrets. */
  masterPassphrase: string;
  hcloudToken: string;
  cloudflare: { apiToken: string; accountId: string; bucketLocation?: string };
  tailscale: { oauthClientId: string; oauthClientSecret: string; tailnet?: string; tags?: string[] };
  /** The control plane's public addresses (/32, /128); ttyd and previews open to these and the tailnet. */
  controlPlaneCidrs: string[];
  sshSourceCidrs?: string[];
  previewPorts?: PortRange;
  /** Private network from `infra/` that boxes join, if any. */
  networkId?: number;
  /** Hetzner label selector of the box snapshots, e.g. `role=berth-box`. */
  imageSelector: string;
  /** Used when a spec leaves location or server type empty. */
  defaults?: { location?: string; serverType?: string };
  namePrefix?: string;
  /** Global limit on concurrent Pulumi operations (each is a CLI plus three provider plugins). Default 4. */
  maxConcurrentOps?: number;
  /** Per-operation work directories are created (and removed) under here. */
  workRoot: string;
  /** Shared `PULUMI_HOME`: plugin cache. */
  pulumiHome: string;
  /** The CLI; tests pass a scripted one. Default: `pulumi` on PATH. */
  pulumiCommand?: auto.PulumiCommand;
  hetznerApiUrl?: string;
  fetch?: typeof fetch;
  /** Policy packs run on `up` and `preview`. Default: stacks/policy. `[]` disables. */
  policyPacks?: string[];
  projectName?: string;
  /** Empties the workspace's bucket before destroy (R2 keeps non-empty buckets). Default: S3 API calls. */
  emptyBucket?: (target: S3Target, signal: AbortSignal) => Promise<number>;
  /** The program for a workspace. Default: stacks/workspace's `workspaceProgram`; tests substitute a stub. */
  program?: (input: WorkspaceProgramInput) => auto.PulumiFn;
}

type Mode = "createOrSelect" | "select";

const PLUGINS = ["hcloud", "cloudflare", "tailscale"] as const;
const RUNNING_STATUSES = new Set(["running", "initializing", "starting", "migrating", "rebuilding"]);

export class PulumiDriver implements WorkspaceDriver {
  readonly name = "pulumi";
  private readonly limit: Semaphore;
  private readonly busy = new Set<WorkspaceId>();
  private readonly hetzner: HetznerClient;
  private command?: Promise<auto.PulumiCommand>;

  private readonly opts: PulumiDriverOptions;

  /**
   * The workspace's own R2 bucket (named like the stack names it), read with the bucket-scoped token the
   * stack created: the control plane lists and exports snapshots without the box.
   */
  backupRepository(id: WorkspaceId): BackupRepository {
    const bucket = resourceName(this.opts.namePrefix ?? "berth", id);
    return {
      url: `s3:${r2Endpoint(this.opts.cloudflare.accountId)}/${bucket}`,
      s3SecretOutputs: { accessKeyId: "r2AccessKeyId", secretAccessKey: "r2SecretAccessKey" },
    };
  }

  constructor(opts: PulumiDriverOptions) {
    this.opts = opts;
    this.limit = new Semaphore(opts.maxConcurrentOps ?? 4);
    this.hetzner = new HetznerClient(opts.hcloudToken, opts.hetznerApiUrl ?? HETZNER_API_URL, opts.fetch);
  }

  /** Number of Pulumi operations running now, and waiting for a slot. */
  get load(): { running: number; waiting: number } {
    return { running: this.limit.running, waiting: this.limit.waiting };
  }

  /** At boot: installs the provider plugins the program needs, at the versions of the npm packages. */
  async installPlugins(): Promise<void> {
    const require = createRequire(import.meta.url);
    await this.withWorkDir("plugins", undefined, async (workDir) => {
      const ws = await auto.LocalWorkspace.create(await this.workspaceOptions(workDir, {}));
      for (const name of PLUGINS) {
        const pkg = require(`@pulumi/${name}/package.json`) as { pulumi: { version: string } };
        await ws.installPlugin(name, `v${pkg.pulumi.version}`);
      }
    });
  }

  apply(
    spec: WorkspaceSpec,
    transition: Transition,
    log: BuildLog,
    signal: AbortSignal,
  ): Promise<WorkspaceOutputs> {
    const running = transition === "start";
    return this.stackOp(spec.workspaceId, "up", signal, async (workDir) => {
      log.stage(`pulumi: select ${stackName(spec.workspaceId)}`);
      const stack = await this.openStack(spec, { running, protect: true }, workDir, "createOrSelect");
      signal.throwIfAborted();
      log.stage(running ? "pulumi up (start)" : "pulumi up (hibernate)");
      const result = await stack.up({
        onEvent: engineEventsToLog(log),
        signal: cliSignal(signal),
        color: "never",
        message: `berth ${transition}`,
        policyPacks: this.policyPacks,
      });
      return outputsFrom(result.outputs);
    });
  }

  destroy(spec: WorkspaceSpec, log: BuildLog, signal: AbortSignal): Promise<void> {
    return this.stackOp(spec.workspaceId, "destroy", signal, async (workDir) => {
      let stack: auto.Stack;
      try {
        stack = await this.openStack(spec, { running: false, protect: false }, workDir, "select");
      } catch (err) {
        if (!(err instanceof auto.StackNotFoundError)) throw err;
        log.line("info", `no stack ${stackName(spec.workspaceId)}: nothing to destroy`);
        return;
      }
      signal.throwIfAborted();
      const onEvent = engineEventsToLog(log);
      // 1. Lift protection (and stop the server, gracefully). No policy pack here: it requires protection.
      log.stage("pulumi up (lift protection)");
      const lifted = await stack.up({
        onEvent,
        signal: cliSignal(signal),
        color: "never",
        message: "berth destroy: lift protection",
      });
      signal.throwIfAborted();
      // 2. Empty the bucket (R2 refuses to delete one that holds objects) with the stack's own bucket keys.
      const out = outputsFrom(lifted.outputs);
      const { r2AccessKeyId, r2SecretAccessKey } = out.secretOutputs;
      if (out.bucketName && r2AccessKeyId && r2SecretAccessKey) {
        log.stage(`empty bucket ${out.bucketName}`);
        const target = {
          endpoint: r2Endpoint(this.opts.cloudflare.accountId),
          bucket: out.bucketName,
          accessKeyId: r2AccessKeyId,
          secretAccessKey: r2SecretAccessKey,
        };
        const n = await (
          this.opts.emptyBucket ?? ((t, s) => emptyBucket(t, { signal: s, fetch: this.opts.fetch }))
        )(target, signal);
        log.line("info", `deleted ${n} objects from ${out.bucketName}`);
      }
      // 3. Delete everything, then remove the stack with its history.
      signal.throwIfAborted();
      log.stage("pulumi destroy");
      await stack.destroy({
        onEvent,
        signal: cliSignal(signal),
        color: "never",
        message: "berth destroy",
        runProgram: true,
        remove: true,
      });
    });
  }

  preview(spec: WorkspaceSpec, transition: Transition): Promise<StackDiff> {
    return this.stackOp(spec.workspaceId, "preview", undefined, async (workDir) => {
      const stack = await this.openStack(
        spec,
        { running: transition === "start", protect: true },
        workDir,
        "select",
      );
      const events: auto.EngineEvent[] = [];
      await stack.preview({ onEvent: (e) => events.push(e), color: "never", policyPacks: this.policyPacks });
      return stackDiffFromEvents(spec.workspaceId, events);
    });
  }

  async observe(id: WorkspaceId): Promise<ObservedState | null> {
    const all = await this.observeWhere(`${WORKSPACE_LABEL}=${id}`);
    return all.find((o) => o.workspaceId === id) ?? null;
  }

  observeAll(): Promise<ObservedState[]> {
    return this.observeWhere(WORKSPACE_LABEL);
  }

  repair(id: WorkspaceId, log: BuildLog, signal: AbortSignal): Promise<void> {
    return this.stackOp(id, "repair", signal, async (workDir) => {
      // No program needed: cancel and refresh work from the state, with the provider settings stored there.
      const stack = await auto.LocalWorkspace.selectStack(
        { stackName: stackName(id), workDir },
        await this.workspaceOptions(workDir, this.stackEnv(id)),
      );
      log.stage("pulumi cancel");
      try {
        // On a DIY backend this deletes every lock file of the stack. Safe here only because this process
        // holds the workspace (`busy`) and the control plane holds its advisory lock.
        await stack.cancel();
        log.line("info", "cleared the stack's lock");
      } catch (err) {
        if (err instanceof auto.StackNotFoundError) throw err;
        log.line("info", "no update to cancel");
      }
      signal.throwIfAborted();
      log.stage("pulumi refresh");
      // --clear-pending-creates drops creates interrupted mid-flight; refresh reconciles the rest with the
      // cloud. (Export/edit/import would write the state, secrets in clear, to a world-readable temp file.)
      await stack.refresh({
        onEvent: engineEventsToLog(log),
        signal: cliSignal(signal),
        color: "never",
        clearPendingCreates: true,
        message: "berth repair",
      });
    });
  }

  // --- internals -------------------------------------------------------------------------------------

  private get policyPacks(): string[] {
    return this.opts.policyPacks ?? [DEFAULT_POLICY_PACK];
  }

  /** Per-stack passphrase: a leaked one exposes one stack, and none is stored anywhere. */
  stackPassphrase(id: WorkspaceId): string {
    return createHmac("sha256", this.opts.masterPassphrase)
      .update(`berth-stack-passphrase:${stackName(id)}`)
      .digest("base64url");
  }

  /** Environment of every CLI call for a stack. Only the CLI child sees it (execa merges it per call). */
  private stackEnv(id: WorkspaceId): Record<string, string> {
    const o = this.opts;
    return {
      PULUMI_BACKEND_URL: o.backendUrl,
      PULUMI_CONFIG_PASSPHRASE: this.stackPassphrase(id),
      PULUMI_SKIP_UPDATE_CHECK: "true",
      ...o.backendEnv,
      HCLOUD_TOKEN: o.hcloudToken,
      CLOUDFLARE_API_TOKEN: o.cloudflare.apiToken,
      TAILSCALE_OAUTH_CLIENT_ID: o.tailscale.oauthClientId,
      TAILSCALE_OAUTH_CLIENT_SECRET: o.tailscale.oauthClientSecret,
      ...(o.tailscale.tailnet ? { TAILSCALE_TAILNET: o.tailscale.tailnet } : {}),
    };
  }

  private async workspaceOptions(
    workDir: string,
    envVars: Record<string, string>,
  ): Promise<auto.LocalWorkspaceOptions> {
    await mkdir(this.opts.pulumiHome, { recursive: true });
    return {
      workDir,
      pulumiHome: this.opts.pulumiHome,
      pulumiCommand: await this.pulumiCommand(),
      envVars: {
        PULUMI_BACKEND_URL: this.opts.backendUrl,
        PULUMI_SKIP_UPDATE_CHECK: "true",
        ...this.opts.backendEnv,
        ...envVars,
        // The policy pack's analyzer is a `node` the CLI finds on PATH: make it this Node (24, type stripping).
        PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}`,
      },
      secretsProvider: "passphrase",
      projectSettings: {
        name: this.opts.projectName ?? PROJECT_NAME,
        runtime: "nodejs",
        backend: { url: this.opts.backendUrl },
      },
    };
  }

  private pulumiCommand(): Promise<auto.PulumiCommand> {
    this.command ??= this.opts.pulumiCommand
      ? Promise.resolve(this.opts.pulumiCommand)
      : auto.PulumiCommand.get().catch((err: unknown) => {
          this.command = undefined;
          throw new DriverError("the pulumi CLI is not installed or not on PATH", { cause: err });
        });
    return this.command;
  }

  /** The program input for a spec: the database row plus the control plane's settings and credentials. */
  programInput(spec: WorkspaceSpec, flags: { running: boolean; protect: boolean }): WorkspaceProgramInput {
    const o = this.opts;
    const serverType = spec.serverType || o.defaults?.serverType;
    const location = spec.location || o.defaults?.location;
    if (!serverType || !location) throw new DriverError("the workspace has no server type or location");
    return {
      workspaceId: spec.workspaceId,
      running: flags.running,
      protect: flags.protect,
      location,
      serverType,
      volumeSizeGb: spec.volumeSizeGb,
      imageSelector: o.imageSelector,
      // Hetzner's Ampere types are the `cax` family.
      imageArchitecture: serverType.startsWith("cax") ? "arm" : "x86",
      controlPlaneUrl: spec.controlPlaneUrl,
      controlPlaneCidrs: o.controlPlaneCidrs,
      previewPorts: o.previewPorts,
      sshSourceCidrs: o.sshSourceCidrs,
      networkId: o.networkId,
      tailnetTags: o.tailscale.tags,
      cloudflareAccountId: o.cloudflare.accountId,
      bucketLocation: o.cloudflare.bucketLocation,
      namePrefix: o.namePrefix,
      ...(spec.traceparent ? { traceparent: spec.traceparent } : {}),
      secrets: spec.secrets,
      credentials: {
        hcloudToken: o.hcloudToken,
        cloudflareApiToken: o.cloudflare.apiToken,
        tailscale: {
          oauthClientId: o.tailscale.oauthClientId,
          oauthClientSecret: o.tailscale.oauthClientSecret,
          tailnet: o.tailscale.tailnet,
        },
      },
    };
  }

  private async openStack(
    spec: WorkspaceSpec,
    flags: { running: boolean; protect: boolean },
    workDir: string,
    mode: Mode,
  ): Promise<auto.Stack> {
    const args: auto.InlineProgramArgs = {
      stackName: stackName(spec.workspaceId),
      projectName: this.opts.projectName ?? PROJECT_NAME,
      program: (this.opts.program ?? workspaceProgram)(this.programInput(spec, flags)),
    };
    const wsOpts = await this.workspaceOptions(workDir, this.stackEnv(spec.workspaceId));
    if (mode === "select") return auto.LocalWorkspace.selectStack(args, wsOpts);
    try {
      return await auto.LocalWorkspace.createOrSelectStack(args, wsOpts);
    } catch (err) {
      // Two creators raced between `stack select` and `stack init`: the stack exists now, so select it.
      if (err instanceof auto.StackAlreadyExistsError) return auto.LocalWorkspace.selectStack(args, wsOpts);
      throw err;
    }
  }

  /** One operation on one stack: never two at once in this process, within the global limit. */
  private async stackOp<T>(
    id: WorkspaceId,
    what: string,
    signal: AbortSignal | undefined,
    fn: (workDir: string) => Promise<T>,
  ): Promise<T> {
    const label = `${what} ${stackName(id)}`;
    if (this.busy.has(id)) {
      throw new StackBusyError(`${label}: another operation on this workspace is running`);
    }
    this.busy.add(id);
    try {
      return await this.withWorkDir(label, signal, fn);
    } finally {
      this.busy.delete(id);
    }
  }

  /** A fresh work directory per operation (Pulumi.yaml is rewritten on each), removed afterwards. */
  private async withWorkDir<T>(
    label: string,
    signal: AbortSignal | undefined,
    fn: (workDir: string) => Promise<T>,
  ): Promise<T> {
    let release: (() => void) | undefined;
    try {
      release = await this.limit.acquire(signal);
      await mkdir(this.opts.workRoot, { recursive: true });
      const workDir = await mkdtemp(join(this.opts.workRoot, `${label.replace(/[^a-z0-9-]+/gi, "-")}-`));
      try {
        return await fn(workDir);
      } finally {
        await rm(workDir, { recursive: true, force: true });
      }
    } catch (err) {
      throw toDriverError(err, label, signal);
    } finally {
      release?.();
    }
  }

  /** One `stack ls` and one paginated Hetzner listing per resource kind, whatever the number of workspaces. */
  private async observeWhere(selector: string): Promise<ObservedState[]> {
    const [stacks, servers, volumes, firewalls] = await Promise.all([
      this.withWorkDir("stack-ls", undefined, async (workDir) => {
        const ws = await auto.LocalWorkspace.create(await this.workspaceOptions(workDir, {}));
        return ws.listStacks();
      }),
      this.hetzner.list("servers", selector),
      this.hetzner.list("volumes", selector),
      this.hetzner.list("firewalls", selector),
    ]);
    const states = new Map<WorkspaceId, ObservedState & { server?: HetznerServer }>();
    const entry = (id: WorkspaceId) => {
      let s = states.get(id);
      if (!s) {
        s = { workspaceId: id, running: false, serverId: null, publicIp: null, resourceIds: [] };
        states.set(id, s);
      }
      return s;
    };
    const only = selector.includes("=") ? selector.split("=")[1] : undefined;
    for (const st of stacks) {
      const id = workspaceIdFromStack(st.name);
      if (id && (only === undefined || id === only))
        entry(id).resourceIds.push(`pulumi:stack/${stackName(id)}`);
    }
    for (const srv of servers) {
      const id = srv.labels[WORKSPACE_LABEL];
      if (!id) continue;
      const s = entry(id);
      s.resourceIds.push(`hcloud:server/${srv.id}`);
      // Two servers for one workspace is a leak; report the running one.
      if (!s.server || (RUNNING_STATUSES.has(srv.status) && !s.running)) {
        s.server = srv;
        s.serverId = String(srv.id);
        s.publicIp = srv.public_net.ipv4?.ip ?? null;
        s.running = RUNNING_STATUSES.has(srv.status);
      }
    }
    for (const v of volumes) {
      const id = v.labels[WORKSPACE_LABEL];
      if (id) entry(id).resourceIds.push(`hcloud:volume/${v.id}`);
    }
    for (const f of firewalls) {
      const id = f.labels[WORKSPACE_LABEL];
      if (id) entry(id).resourceIds.push(`hcloud:firewall/${f.id}`);
    }
    return [...states.values()].map(({ server: _server, ...s }) => s);
  }
}

/**
 * The signal to hand the Automation API. The SDK only adds an `abort` listener once it has spawned the CLI, and
 * an AbortSignal never calls a listener added after it fired: an abort that lands while the SDK prepares (gRPC
 * servers, event log) would be lost and the CLI would run to its end. This view of `signal` calls such a late
 * listener at once, so the CLI gets its SIGINT right after it starts.
 */
export function cliSignal(signal: AbortSignal): AbortSignal {
  return new Proxy(signal, {
    get(target, prop) {
      if (prop === "addEventListener") {
        return (
          type: string,
          listener: EventListenerOrEventListenerObject,
          options?: AddEventListenerOptions | boolean,
        ) => {
          if (type === "abort" && target.aborted) {
            const event = new Event("abort");
            queueMicrotask(() =>
              typeof listener === "function" ? listener.call(target, event) : listener.handleEvent(event),
            );
            return;
          }
          target.addEventListener(type, listener, options);
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

function outputsFrom(outputs: auto.OutputMap): WorkspaceOutputs {
  const get = <K extends keyof WorkspaceStackOutputs>(k: K) =>
    outputs[k]?.value as WorkspaceStackOutputs[K] | undefined;
  const volumeId = get("volumeId");
  const volumeDevice = get("volumeDevice");
  if (volumeId === undefined || volumeDevice === undefined) {
    throw new DriverError("the stack has no volume outputs after up");
  }
  const secretOutputs: Record<string, string> = {};
  for (const k of SECRET_OUTPUTS) {
    const v = get(k);
    if (typeof v === "string") secretOutputs[k] = v;
  }
  return {
    running: get("running") === true,
    serverId: get("serverId") ?? null,
    publicIp: get("publicIpv4") ?? null,
    // ttyd's fixed port on every box image; the stack's firewall opens it to the control plane only.
    terminalPort: get("running") === true ? TTYD_PORT : null,
    volumeId: String(volumeId),
    volumeDevice,
    bucketName: get("bucketName") ?? null,
    secretOutputs,
  };
}
