/**
 * Runs builds from the Postgres queue (`workspace_builds` rows in `pending`), a few at a time per process.
 *
 * - Claim: `FOR UPDATE SKIP LOCKED`, then a session-level advisory lock on the workspace, held on the same
 *   connection for the whole build. Two builds of one workspace never run at once, across replicas.
 * - Liveness: the worker heartbeats the row. The reaper (every worker runs it) requeues a running build
 *   whose workspace lock is free (its worker's connection died with the process), and fails one whose
 *   heartbeat is older than `staleAfterMs` while the lock is still held (a hung worker).
 * - Retries: a retryable driver error puts the build back to `pending` with exponential backoff.
 * - Cancel: `cancel_requested_at` plus a NOTIFY; the running worker aborts the driver's AbortSignal.
 */
import { hostname } from "node:os";
import { SpanKind } from "@opentelemetry/api";
import type { WorkspaceDriver, WorkspaceOutputs } from "../../stacks/driver.ts";
import { OperationCanceledError } from "../../stacks/errors.ts";
import { DbBuildLog } from "../domain/builds/build-log.ts";
import { workspaceSpec } from "../domain/builds/spec.ts";
import { generateAgentToken, hashAgentToken } from "../domain/workspaces/secrets.ts";
import { stateAfterBuild } from "../domain/workspaces/state-machine.ts";
import type { Logger } from "../platform/logger.ts";
import type { Metrics } from "../platform/metrics.ts";
import { contextFromTraceparent, currentTraceparent, inSpan } from "../platform/tracing.ts";
import { SYSTEM } from "../store/actors.ts";
import type { WorkspaceLock } from "../store/build-queue.ts";
import { BUILD_CANCEL_CHANNEL, BUILD_QUEUED_CHANNEL } from "../store/channels.ts";
import type { PgListener } from "../store/listener.ts";
import type { BuildRow } from "../store/rows.ts";
import type { AuthorizedStore, Store } from "../store/store.ts";

const SHUTDOWN = new Error("control plane shutting down");
/** The connection holding the workspace's advisory lock died: another replica may resume the build. */
const LOCK_LOST = new Error("lost the workspace lock");

export interface BuildWorkerOptions {
  /** The worker acts as `system:builds`. */
  store: Store;
  listener: PgListener;
  driver: WorkspaceDriver;
  log: Logger;
  metrics: Metrics;
  controlPlaneUrl: string;
  workerId?: string;
  concurrency?: number;
  pollMs?: number;
  heartbeatMs?: number;
  /** A running build whose heartbeat is older than this is failed (DESIGN: five minutes). */
  staleAfterMs?: number;
  maxAttempts?: number;
  backoffMs?: (attempt: number) => number;
  /**
   * Runs before a stop or destroy reaches the driver: the pre-stop backup (domain/backups), best effort
   * within its own budget. It never fails the build.
   */
  beforeStop?: (workspaceId: string, log: (line: string) => void) => Promise<unknown>;
}

export class BuildWorker {
  readonly #o: Required<Omit<BuildWorkerOptions, "workerId" | "beforeStop">> &
    Pick<BuildWorkerOptions, "beforeStop"> & { workerId: string };
  readonly #builds: AuthorizedStore;
  readonly #running = new Map<string, AbortController>();
  #stopped = true;
  #wake: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  #unsubscribe: Array<() => void> = [];

  constructor(options: BuildWorkerOptions) {
    this.#o = {
      workerId: options.workerId ?? `${hostname()}:${process.pid}`,
      concurrency: 2,
      pollMs: 1_000,
      heartbeatMs: 5_000,
      staleAfterMs: 5 * 60_000,
      maxAttempts: 3,
      backoffMs: (attempt) => Math.min(60_000, 2_000 * 2 ** (attempt - 1)),
      ...options,
    };
    this.#builds = options.store.as(SYSTEM.builds);
  }

  get workerId(): string {
    return this.#o.workerId;
  }

  async start(): Promise<void> {
    this.#stopped = false;
    this.#unsubscribe.push(await this.#o.listener.subscribe(BUILD_QUEUED_CHANNEL, () => this.#wake?.()));
    this.#unsubscribe.push(
      await this.#o.listener.subscribe(BUILD_CANCEL_CHANNEL, (buildId) =>
        this.#running.get(buildId)?.abort(),
      ),
    );
    this.#loop = this.#run();
  }

  /** Stops claiming and waits for running builds; after `graceMs` they are aborted and requeued. */
  async stop(graceMs = 10_000): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    for (const u of this.#unsubscribe) u();
    const timer = setTimeout(() => {
      for (const c of this.#running.values()) c.abort(SHUTDOWN);
    }, graceMs);
    await this.#loop;
    clearTimeout(timer);
  }

  async #run(): Promise<void> {
    const inflight = new Set<Promise<void>>();
    let lastReap = 0;
    while (!this.#stopped) {
      if (Date.now() - lastReap >= this.#o.pollMs) {
        lastReap = Date.now();
        await this.reap().catch((err) => this.#o.log.warn({ err }, "build reaper failed"));
      }
      while (!this.#stopped && inflight.size < this.#o.concurrency) {
        const claimed = await this.#claim().catch((err) => {
          this.#o.log.warn({ err }, "claiming a build failed");
          return null;
        });
        if (!claimed) break;
        const p = this.#execute(claimed.build, claimed.lock).finally(() => {
          inflight.delete(p);
          this.#wake?.(); // a slot is free: claim the next build now rather than at the next poll
        });
        inflight.add(p);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.#o.pollMs);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    await Promise.all(inflight);
  }

  #claim(): Promise<{ build: BuildRow; lock: WorkspaceLock } | null> {
    return this.#builds.buildQueue.claim(this.#o.workerId);
  }

  /** A build's span continues the trace of the request that queued it (`trace_context`). */
  #execute(build: BuildRow, lock: WorkspaceLock): Promise<void> {
    return inSpan(
      `build ${build.transition}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "berth.build_id": build.id,
          "berth.workspace_id": build.workspaceId,
          "berth.build_attempt": build.attempt,
        },
      },
      () => this.#executeInSpan(build, lock),
      contextFromTraceparent(build.traceContext),
    );
  }

  async #executeInSpan(build: BuildRow, lock: WorkspaceLock): Promise<void> {
    const queue = this.#builds.buildQueue;
    const controller = new AbortController();
    this.#running.set(build.id, controller);
    const log = await DbBuildLog.open(queue, build.id);
    const started = Date.now();
    this.#o.metrics.buildQueueWait.observe(
      { transition: build.transition },
      Math.max(0, (build.startedAt!.getTime() - build.createdAt.getTime()) / 1000),
    );
    const heartbeat = setInterval(() => {
      queue
        .heartbeat(build.id, this.#o.workerId)
        .then(({ owned, cancel }) => {
          // The row is no longer ours (reaped), or a cancel arrived while NOTIFY was missed.
          if (!owned || cancel) controller.abort();
        })
        .catch(() => {});
    }, this.#o.heartbeatMs);
    // Without the lock, another replica's reaper may resume this build: stop driving the stack at once.
    lock.onLost(() => controller.abort(LOCK_LOST));
    try {
      if (build.cancelRequestedAt) controller.abort();
      if (build.attempt > 1) log.line("warn", `attempt ${build.attempt} of ${this.#o.maxAttempts}`);
      const outcome = await this.#drive(build, log, controller.signal);
      await log.flush().catch(() => {});
      await this.#finish(build, "succeeded", null, outcome, log);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const reason = controller.signal.reason;
      if (reason === SHUTDOWN || reason === LOCK_LOST) {
        // Not the build's fault: hand it, attempt unspent, to whichever replica claims it next.
        log.line(
          "warn",
          reason === SHUTDOWN
            ? "this control plane is shutting down; the build will resume elsewhere"
            : "this control plane lost the workspace's lock; the build will resume elsewhere",
        );
        await log.flush().catch(() => {});
        await queue.handBack(build.id, this.#o.workerId);
        return;
      }
      const canceled = controller.signal.aborted || err instanceof OperationCanceledError;
      const retryable = !canceled && (err as { retryable?: boolean }).retryable === true;
      if (retryable && build.attempt < this.#o.maxAttempts) {
        const delay = this.#o.backoffMs(build.attempt);
        log.line("warn", `${message}; retrying in ${Math.round(delay / 1000)}s`);
        await log.flush().catch(() => {});
        await queue.retryLater(build.id, this.#o.workerId, message, delay);
      } else {
        log.line("error", canceled ? `canceled: ${message}` : message);
        await log.flush().catch(() => {});
        await this.#finish(build, canceled ? "canceled" : "failed", message, null, log);
      }
    } finally {
      clearInterval(heartbeat);
      this.#running.delete(build.id);
      const final = await queue.status(build.id);
      if (final && final !== "pending" && final !== "running") {
        this.#o.metrics.buildDuration.observe(
          { transition: build.transition, status: final },
          (Date.now() - started) / 1000,
        );
      }
      await lock.release();
    }
  }

  /** Calls the driver. For a start, first opens the instance row with a fresh agent token's hash. */
  async #drive(build: BuildRow, log: DbBuildLog, signal: AbortSignal): Promise<WorkspaceOutputs | null> {
    const workspace = await this.#builds.buildQueue.workspaceOf(build);
    const agentToken = generateAgentToken();
    const spec = await workspaceSpec(this.#builds.secrets, workspace, this.#o.controlPlaneUrl, agentToken);
    // The box's first heartbeat joins this build's trace (the driver hands it over at boot).
    const traceparent = currentTraceparent();
    if (traceparent) spec.traceparent = traceparent;
    const driver = this.#o.driver;
    if (build.transition !== "start" && this.#o.beforeStop && !signal.aborted) {
      log.stage("pre-stop backup");
      await this.#o.beforeStop(build.workspaceId, (line) => log.line("info", line)).catch(() => {});
    }
    switch (build.transition) {
      case "start": {
        await this.#builds.buildQueue.openInstance(build, hashAgentToken(agentToken));
        log.stage(`${driver.name}: start`);
        return driver.apply(spec, "start", log, signal);
      }
      case "stop":
        log.stage(`${driver.name}: stop`);
        return driver.apply(spec, "stop", log, signal);
      case "destroy":
        log.stage(`${driver.name}: destroy`);
        await driver.destroy(spec, log, signal);
        return null;
    }
  }

  /** Records the outcome: build row, instance, volume and workspace state, in one transaction. */
  async #finish(
    build: BuildRow,
    status: "succeeded" | "failed" | "canceled",
    error: string | null,
    outputs: WorkspaceOutputs | null,
    log: DbBuildLog,
  ): Promise<void> {
    const done = await this.#builds.buildQueue.finish(build, this.#o.workerId, {
      status,
      error,
      outputs,
      stateAfter: (agentReady) => stateAfterBuild(build.transition, status, agentReady),
    });
    if (!done) return;
    log.stage(status === "succeeded" ? "done" : status);
    await log.flush().catch(() => {});
    const operation = await this.#builds.buildQueue.operationOf(build.id);
    this.#o.metrics.buildsTotal.inc({ transition: build.transition, operation, status });
    if (status !== "succeeded")
      this.#o.metrics.transitionFailures.inc({ transition: build.transition, operation });
    this.#o.log.info(
      { buildId: build.id, workspaceId: build.workspaceId, transition: build.transition, operation, status },
      "build finished",
    );
  }

  /**
   * Finds running builds whose worker is gone (its advisory lock is free: the connection died with the
   * process) and requeues them, or fails them after the last attempt; fails builds whose worker is alive
   * but silent past `staleAfterMs`.
   */
  async reap(): Promise<void> {
    const queue = this.#builds.buildQueue;
    // A free lock with a fresh heartbeat may be a live worker whose lock connection just died: it stops its
    // driver operation and hands the build back; give it a few heartbeats before resuming the build here.
    for (const row of await queue.running(this.#o.staleAfterMs, 3 * this.#o.heartbeatMs)) {
      if (this.#running.has(row.id)) continue;
      const orphaned = await queue.isOrphaned(row.workspaceId);
      if (orphaned && !row.quiet) continue;
      if (orphaned && row.attempt < this.#o.maxAttempts) {
        if (await queue.requeueOrphan(row.id)) {
          const log = await DbBuildLog.open(queue, row.id);
          log.line("warn", "the control plane running this build stopped; resuming on another");
          await log.flush().catch(() => {});
          this.#o.log.warn({ buildId: row.id }, "requeued an orphaned build");
        }
      } else if (orphaned || row.stale) {
        const reason = orphaned ? "worker died on its last attempt" : "build heartbeat stopped for too long";
        const transition = await queue.failReaped(row.id, row.workspaceId, reason);
        if (transition) {
          const operation = await queue.operationOf(row.id);
          this.#o.metrics.buildsTotal.inc({ transition, operation, status: "failed" });
          this.#o.metrics.transitionFailures.inc({ transition, operation });
          const log = await DbBuildLog.open(queue, row.id);
          log.line("error", reason);
          await log.flush().catch(() => {});
        }
      }
    }
  }
}
