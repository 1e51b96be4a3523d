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
import { and, eq, isNull } from "drizzle-orm";
import type pg from "pg";
import type { WorkspaceDriver, WorkspaceOutputs } from "../../stacks/driver.ts";
import { OperationCanceledError } from "../../stacks/errors.ts";
import { DbBuildLog } from "../domain/builds/build-log.ts";
import { workspaceSpec } from "../domain/builds/spec.ts";
import { generateAgentToken, hashAgentToken, storeWorkspaceSecrets } from "../domain/workspaces/secrets.ts";
import { BUILD_QUEUED_CHANNEL, type BuildRow } from "../domain/workspaces/service.ts";
import { stateAfterBuild } from "../domain/workspaces/state-machine.ts";
import type { Logger } from "../platform/logger.ts";
import type { Metrics } from "../platform/metrics.ts";
import type { SecretBox } from "../platform/secret-box.ts";
import type { Database } from "../store/client.ts";
import type { PgListener } from "../store/listener.ts";
import { workspaceBuilds, workspaceInstances, workspaces, workspaceVolumes } from "../store/schema.ts";

export const BUILD_CANCEL_CHANNEL = "berth_build_cancel";
const SHUTDOWN = new Error("control plane shutting down");

export interface BuildWorkerOptions {
  database: Database;
  listener: PgListener;
  driver: WorkspaceDriver;
  secretBox: SecretBox;
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
}

const lockKey = (workspaceId: string) => `workspace:${workspaceId}`;

export class BuildWorker {
  readonly #o: Required<Omit<BuildWorkerOptions, "workerId">> & { workerId: string };
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
        const p = this.#execute(claimed.build, claimed.client).finally(() => {
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

  async #claim(): Promise<{ build: BuildRow; client: pg.PoolClient } | null> {
    const client = await this.#o.database.pool.connect();
    let keep = false;
    try {
      await client.query("BEGIN");
      const { rows } = await client.query<{ id: string; workspace_id: string }>(
        `SELECT id, workspace_id FROM workspace_builds
         WHERE status = 'pending' AND not_before <= now()
         ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 8`,
      );
      for (const row of rows) {
        const { rows: lock } = await client.query<{ ok: boolean }>(
          "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok",
          [lockKey(row.workspace_id)],
        );
        if (!lock[0]!.ok) continue;
        const { rows: claimed } = await client.query(
          `UPDATE workspace_builds
           SET status = 'running', attempt = attempt + 1, worker_id = $2, heartbeat_at = now(),
               started_at = coalesce(started_at, now())
           WHERE id = $1 RETURNING id`,
          [row.id, this.#o.workerId],
        );
        await client.query("COMMIT");
        const [build] = await this.#o.database.db
          .select()
          .from(workspaceBuilds)
          .where(eq(workspaceBuilds.id, claimed[0].id));
        keep = true;
        return { build: build!, client };
      }
      await client.query("ROLLBACK");
      return null;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      if (!keep) client.release();
    }
  }

  async #execute(build: BuildRow, lockClient: pg.PoolClient): Promise<void> {
    const { db, pool } = this.#o.database;
    const controller = new AbortController();
    this.#running.set(build.id, controller);
    const log = await DbBuildLog.open(pool, build.id);
    const started = Date.now();
    this.#o.metrics.buildQueueWait.observe(
      { transition: build.transition },
      Math.max(0, (build.startedAt!.getTime() - build.createdAt.getTime()) / 1000),
    );
    const heartbeat = setInterval(() => {
      pool
        .query(
          "UPDATE workspace_builds SET heartbeat_at = now() WHERE id = $1 AND worker_id = $2 RETURNING cancel_requested_at",
          [build.id, this.#o.workerId],
        )
        .then(({ rows }) => {
          // The row is no longer ours (reaped), or a cancel arrived while NOTIFY was missed.
          if (rows.length === 0 || rows[0].cancel_requested_at) controller.abort();
        })
        .catch(() => {});
    }, this.#o.heartbeatMs);
    try {
      if (build.cancelRequestedAt) controller.abort();
      if (build.attempt > 1) log.line("warn", `attempt ${build.attempt} of ${this.#o.maxAttempts}`);
      const outcome = await this.#drive(build, log, controller.signal);
      await log.flush().catch(() => {});
      await this.#finish(build, "succeeded", null, outcome, log);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (controller.signal.reason === SHUTDOWN) {
        // Not the build's fault: hand it, attempt unspent, to whichever replica claims it next.
        log.line("warn", "this control plane is shutting down; the build will resume elsewhere");
        await log.flush().catch(() => {});
        await pool.query(
          `UPDATE workspace_builds SET status = 'pending', worker_id = NULL, attempt = attempt - 1, not_before = now()
           WHERE id = $1 AND worker_id = $2 AND status = 'running'`,
          [build.id, this.#o.workerId],
        );
        return;
      }
      const canceled = controller.signal.aborted || err instanceof OperationCanceledError;
      const retryable = !canceled && (err as { retryable?: boolean }).retryable === true;
      if (retryable && build.attempt < this.#o.maxAttempts) {
        const delay = this.#o.backoffMs(build.attempt);
        log.line("warn", `${message}; retrying in ${Math.round(delay / 1000)}s`);
        await log.flush().catch(() => {});
        await pool.query(
          `UPDATE workspace_builds SET status = 'pending', worker_id = NULL, error = $3,
             not_before = now() + ($4::int * interval '1 millisecond')
           WHERE id = $1 AND worker_id = $2 AND status = 'running'`,
          [build.id, this.#o.workerId, message, delay],
        );
      } else {
        log.line("error", canceled ? `canceled: ${message}` : message);
        await log.flush().catch(() => {});
        await this.#finish(build, canceled ? "canceled" : "failed", message, null, log);
      }
    } finally {
      clearInterval(heartbeat);
      this.#running.delete(build.id);
      const status = await db
        .select({ status: workspaceBuilds.status })
        .from(workspaceBuilds)
        .where(eq(workspaceBuilds.id, build.id));
      const final = status[0]?.status;
      if (final && final !== "pending" && final !== "running") {
        this.#o.metrics.buildDuration.observe(
          { transition: build.transition, status: final },
          (Date.now() - started) / 1000,
        );
      }
      await lockClient
        .query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [lockKey(build.workspaceId)])
        .catch(() => {});
      lockClient.release();
    }
  }

  /** Calls the driver. For a start, first opens the instance row with a fresh agent token's hash. */
  async #drive(build: BuildRow, log: DbBuildLog, signal: AbortSignal): Promise<WorkspaceOutputs | null> {
    const { db } = this.#o.database;
    const [workspace] = await db.select().from(workspaces).where(eq(workspaces.id, build.workspaceId));
    if (!workspace) throw new Error(`workspace ${build.workspaceId} vanished`);
    const agentToken = generateAgentToken();
    const spec = await workspaceSpec(db, this.#o.secretBox, workspace, this.#o.controlPlaneUrl, agentToken);
    const driver = this.#o.driver;
    switch (build.transition) {
      case "start": {
        await db.transaction(async (tx) => {
          // A previous failed start may have left an instance open: its VM, if any, is being replaced.
          await tx
            .update(workspaceInstances)
            .set({ stoppedAt: new Date(), agentLifecycle: "off" })
            .where(
              and(eq(workspaceInstances.workspaceId, workspace.id), isNull(workspaceInstances.stoppedAt)),
            );
          await tx.insert(workspaceInstances).values({
            workspaceId: workspace.id,
            buildId: build.id,
            agentTokenHash: hashAgentToken(agentToken),
          });
        });
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
    const { db } = this.#o.database;
    const done = await db.transaction(async (tx) => {
      const [updated] = await tx
        .update(workspaceBuilds)
        .set({ status, error, finishedAt: new Date(), heartbeatAt: new Date() })
        .where(
          and(
            eq(workspaceBuilds.id, build.id),
            eq(workspaceBuilds.workerId, this.#o.workerId),
            eq(workspaceBuilds.status, "running"),
          ),
        )
        .returning();
      // Reaped while we worked: whoever took the row over records the outcome.
      if (!updated) return false;
      const now = new Date();
      const [instance] = await tx
        .select()
        .from(workspaceInstances)
        .where(
          and(eq(workspaceInstances.workspaceId, build.workspaceId), isNull(workspaceInstances.stoppedAt)),
        );
      if (status === "succeeded" && build.transition === "start" && instance && outputs) {
        await tx
          .update(workspaceInstances)
          .set({
            publicIp: outputs.publicIp,
            providerServerId: outputs.serverId,
            terminalPort: outputs.terminalPort,
          })
          .where(eq(workspaceInstances.id, instance.id));
      }
      if (status === "succeeded" && build.transition !== "start" && instance) {
        await tx
          .update(workspaceInstances)
          .set({ stoppedAt: now, agentLifecycle: "off" })
          .where(eq(workspaceInstances.id, instance.id));
      }
      if (status === "succeeded" && outputs) {
        await tx
          .update(workspaceVolumes)
          .set({ providerVolumeId: outputs.volumeId, device: outputs.volumeDevice })
          .where(
            and(eq(workspaceVolumes.workspaceId, build.workspaceId), isNull(workspaceVolumes.deletedAt)),
          );
        if (Object.keys(outputs.secretOutputs).length > 0) {
          const prefixed = Object.fromEntries(
            Object.entries(outputs.secretOutputs).map(([k, v]) => [`driver-${k}`.toLowerCase(), v]),
          );
          await storeWorkspaceSecrets(tx, this.#o.secretBox, build.workspaceId, prefixed);
        }
      }
      if (status === "succeeded" && build.transition === "destroy") {
        await tx
          .update(workspaceVolumes)
          .set({ deletedAt: now })
          .where(
            and(eq(workspaceVolumes.workspaceId, build.workspaceId), isNull(workspaceVolumes.deletedAt)),
          );
      }
      const agentReady = Boolean(instance?.readyAt) && build.transition === "start";
      const next = stateAfterBuild(build.transition, status, agentReady);
      await tx
        .update(workspaces)
        .set({ state: next, stateChangedAt: now, ...(next === "destroyed" ? { destroyedAt: now } : {}) })
        .where(eq(workspaces.id, build.workspaceId));
      return true;
    });
    if (!done) return;
    log.stage(status === "succeeded" ? "done" : status);
    await log.flush().catch(() => {});
    this.#o.metrics.buildsTotal.inc({ transition: build.transition, status });
    if (status !== "succeeded") this.#o.metrics.transitionFailures.inc({ transition: build.transition });
    this.#o.log.info(
      { buildId: build.id, workspaceId: build.workspaceId, transition: build.transition, status },
      "build finished",
    );
  }

  /**
   * Finds running builds whose worker is gone (its advisory lock is free: the connection died with the
   * process) and requeues them, or fails them after the last attempt; fails builds whose worker is alive
   * but silent past `staleAfterMs`.
   */
  async reap(): Promise<void> {
    const { pool } = this.#o.database;
    const { rows } = await pool.query<{ id: string; workspace_id: string; attempt: number; stale: boolean }>(
      `SELECT id, workspace_id, attempt, heartbeat_at < now() - ($1::int * interval '1 millisecond') AS stale
       FROM workspace_builds WHERE status = 'running'`,
      [this.#o.staleAfterMs],
    );
    for (const row of rows) {
      if (this.#running.has(row.id)) continue;
      const client = await pool.connect();
      try {
        const { rows: lock } = await client.query<{ ok: boolean }>(
          "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok",
          [lockKey(row.workspace_id)],
        );
        const orphaned = lock[0]!.ok;
        if (orphaned)
          await client.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [
            lockKey(row.workspace_id),
          ]);
        if (orphaned && row.attempt < this.#o.maxAttempts) {
          const { rowCount } = await client.query(
            `UPDATE workspace_builds SET status = 'pending', worker_id = NULL, not_before = now()
             WHERE id = $1 AND status = 'running'`,
            [row.id],
          );
          if (rowCount) {
            const log = await DbBuildLog.open(pool, row.id);
            log.line("warn", "the control plane running this build stopped; resuming on another");
            await log.flush().catch(() => {});
            this.#o.log.warn({ buildId: row.id }, "requeued an orphaned build");
          }
        } else if (orphaned || row.stale) {
          await this.#failReaped(
            client,
            row.id,
            row.workspace_id,
            orphaned ? "worker died on its last attempt" : "build heartbeat stopped for too long",
          );
        }
      } finally {
        client.release();
      }
    }
  }

  async #failReaped(
    client: pg.PoolClient,
    buildId: string,
    workspaceId: string,
    reason: string,
  ): Promise<void> {
    await client.query("BEGIN");
    try {
      const { rows } = await client.query<{ transition: BuildRow["transition"] }>(
        `UPDATE workspace_builds SET status = 'failed', error = $2, finished_at = now(), worker_id = NULL
         WHERE id = $1 AND status = 'running' RETURNING transition`,
        [buildId, reason],
      );
      if (rows[0]) {
        await client.query("UPDATE workspaces SET state = 'failed', state_changed_at = now() WHERE id = $1", [
          workspaceId,
        ]);
      }
      await client.query("COMMIT");
      if (rows[0]) {
        this.#o.metrics.buildsTotal.inc({ transition: rows[0].transition, status: "failed" });
        this.#o.metrics.transitionFailures.inc({ transition: rows[0].transition });
        const log = await DbBuildLog.open(this.#o.database.pool, buildId);
        log.line("error", reason);
        await log.flush().catch(() => {});
      }
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      throw err;
    }
  }
}
