/**
 * A driver that replays scripted outcomes per transition, in the spirit of Coder's echo provisioner: succeed
 * with outputs, fail partway (leaving partial resources), or hang until cancelled; `gate` holds every
 * operation running until the test lets it go. It keeps an in-memory "cloud" so observe/observeAll and the
 * reconciler have something real to compare against. Test-only.
 */
import type {
  BuildLog,
  LocalBoxes,
  ObservedState,
  StackDiff,
  Transition,
  WorkspaceDriver,
  WorkspaceId,
  WorkspaceOutputs,
  WorkspaceSpec,
} from "../../stacks/driver.ts";
import { DriverError, OperationCanceledError } from "../../stacks/errors.ts";

export type Outcome =
  | { kind: "succeed"; publicIp?: string; steps?: string[] }
  | { kind: "fail"; message: string; retryable?: boolean; partial?: string[]; steps?: string[] }
  | { kind: "hang" };

type Op = Transition | "destroy";

export interface DriverCall {
  op: Op;
  workspaceId: WorkspaceId;
  spec: WorkspaceSpec;
}

export class ScriptedDriver implements WorkspaceDriver {
  readonly name = "scripted";
  readonly world = new Map<WorkspaceId, ObservedState>();
  readonly calls: DriverCall[] = [];
  /** Highest number of operations seen running at once on one workspace (must stay 1). */
  maxConcurrentPerWorkspace = 0;
  observeAllCalls = 0;
  /** Runs after a successful start, e.g. to play the agent checking in. */
  afterStart: ((spec: WorkspaceSpec) => Promise<void> | void) | null = null;
  /** While set, every operation waits for it after its steps (a test holds a build running, then lets go). */
  gate: Promise<unknown> | null = null;
  /** Its fake boxes may sit on loopback (test servers in this process), whose listeners count as theirs. */
  listenerOwner: LocalBoxes["listenerOwner"] = async () => "workspace";
  readonly localBoxes: LocalBoxes = { listenerOwner: (id, port) => this.listenerOwner(id, port) };
  readonly #scripts = new Map<Op, Outcome[]>();
  readonly #inFlight = new Map<WorkspaceId, number>();
  #nextIp = 10;

  script(op: Op, ...outcomes: Outcome[]): this {
    this.#scripts.set(op, [...(this.#scripts.get(op) ?? []), ...outcomes]);
    return this;
  }

  async apply(
    spec: WorkspaceSpec,
    transition: Transition,
    log: BuildLog,
    signal: AbortSignal,
  ): Promise<WorkspaceOutputs> {
    await this.#run(transition, spec, log, signal);
    const existing = this.world.get(spec.workspaceId);
    const running = transition === "start";
    const publicIp = running ? (existing?.publicIp ?? `203.0.113.${this.#nextIp++}`) : null;
    const state: ObservedState = {
      workspaceId: spec.workspaceId,
      running,
      serverId: running ? `srv-${spec.workspaceId.slice(0, 8)}` : null,
      publicIp,
      resourceIds: [`vol-${spec.workspaceId}`, ...(running ? [`srv-${spec.workspaceId.slice(0, 8)}`] : [])],
    };
    this.world.set(spec.workspaceId, state);
    if (running) await this.afterStart?.(spec);
    return {
      running,
      serverId: state.serverId,
      publicIp,
      terminalPort: running ? 7681 : null,
      volumeId: `vol-${spec.workspaceId}`,
      volumeDevice: `/dev/disk/by-id/scsi-0HC_Volume_${spec.workspaceId.slice(0, 8)}`,
      bucketName: `berth-${spec.workspaceId}`,
      secretOutputs: { "r2-access-key-id": "key-id", "r2-secret-access-key": "scripted-secret" },
    };
  }

  async destroy(spec: WorkspaceSpec, log: BuildLog, signal: AbortSignal): Promise<void> {
    await this.#run("destroy", spec, log, signal);
    this.world.delete(spec.workspaceId);
  }

  async preview(spec: WorkspaceSpec, transition: Transition): Promise<StackDiff> {
    const exists = this.world.get(spec.workspaceId);
    const op =
      transition === "start" ? (exists?.running ? "same" : "create") : exists?.running ? "delete" : "same";
    return {
      workspaceId: spec.workspaceId,
      changes: [
        {
          resource: "server",
          type: "hcloud:index/server:Server",
          op,
          changedKeys: op === "same" ? [] : ["*"],
        },
      ],
    };
  }

  async observe(id: WorkspaceId): Promise<ObservedState | null> {
    return this.world.get(id) ?? null;
  }

  async observeAll(): Promise<ObservedState[]> {
    this.observeAllCalls++;
    return [...this.world.values()];
  }

  async repair(): Promise<void> {}

  async #run(op: Op, spec: WorkspaceSpec, log: BuildLog, signal: AbortSignal): Promise<void> {
    this.calls.push({ op, workspaceId: spec.workspaceId, spec });
    const n = (this.#inFlight.get(spec.workspaceId) ?? 0) + 1;
    this.#inFlight.set(spec.workspaceId, n);
    this.maxConcurrentPerWorkspace = Math.max(this.maxConcurrentPerWorkspace, n);
    try {
      const outcome = this.#scripts.get(op)?.shift() ?? { kind: "succeed" };
      for (const step of outcome.kind === "hang"
        ? ["waiting forever"]
        : (outcome.steps ?? [`${op} server`, `${op} volume`])) {
        log.line("info", step);
      }
      if (outcome.kind === "hang") {
        await new Promise<void>((_, reject) => {
          if (signal.aborted) reject(new OperationCanceledError("canceled"));
          signal.addEventListener("abort", () => reject(new OperationCanceledError("canceled")), {
            once: true,
          });
        });
      }
      if (this.gate) await untilSettled(this.gate, signal);
      if (outcome.kind === "fail") {
        if (outcome.partial) {
          this.world.set(spec.workspaceId, {
            workspaceId: spec.workspaceId,
            running: false,
            serverId: null,
            publicIp: null,
            resourceIds: outcome.partial,
          });
        }
        throw new DriverError(outcome.message, { retryable: outcome.retryable ?? false });
      }
    } finally {
      this.#inFlight.set(spec.workspaceId, (this.#inFlight.get(spec.workspaceId) ?? 1) - 1);
    }
  }
}

function untilSettled(gate: Promise<unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new OperationCanceledError("canceled"));
    signal.addEventListener("abort", () => reject(new OperationCanceledError("canceled")), { once: true });
    gate.then(() => resolve(), reject);
  });
}
