/**
 * The build queue as the build worker (`system:builds`) works it: `workspace_builds` rows in `pending`,
 * claimed with `FOR UPDATE SKIP LOCKED` and a session-level advisory lock on the workspace held on one
 * connection for the whole build, heartbeats, retries, the recorded outcome, and the reaper's repairs.
 * The policy (how many attempts, what backoff, which state a finished build leaves) is the worker's.
 */
import { and, eq, isNull } from "drizzle-orm";
import type pg from "pg";
import type { WorkspaceOutputs } from "../../stacks/driver.ts";
import type { Access } from "./access.ts";
import { BUILD_LOG_CHANNEL } from "./channels.ts";
import type { BuildRow, BuildTransition, WorkspaceState } from "./rows.ts";
import { sessions, workspaceBuilds, workspaceInstances, workspaces, workspaceVolumes } from "./schema.ts";
import { storeWorkspaceSecrets } from "./secrets.ts";

/** A build's transition as people name it: a start creates or wakes, a stop hibernates. */
export type BuildOperation = "create" | "wake" | "hibernate" | "destroy";

const lockKey = (workspaceId: string) => `workspace:${workspaceId}`;

/** The advisory lock a claimed build holds on its workspace; released when the build ends. */
export interface WorkspaceLock {
  release(): Promise<void>;
  /**
   * Calls `cb` (at once if already so) when the connection holding the lock dies: the lock is gone, and
   * another replica's reaper may resume the build. Whoever holds it must stop working at once.
   */
  onLost(cb: () => void): void;
}

export interface RunningBuild {
  id: string;
  workspaceId: string;
  attempt: number;
  /** Its heartbeat is older than the reaper's limit. */
  stale: boolean;
  /** Its heartbeat is older than the reaper's grace: a worker that lost its lock had time to stop. */
  quiet: boolean;
}

export interface LogLineRow {
  level: string;
  stage: string | null;
  message: string;
}

export class BuildQueue {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  get #pool(): pg.Pool {
    this.#access.require("build.run", "build");
    return this.#access.pool;
  }

  /** The oldest due build whose workspace lock is free, now `running` for `workerId`, with its lock. */
  async claim(workerId: string): Promise<{ build: BuildRow; lock: WorkspaceLock } | null> {
    const client = await this.#pool.connect();
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
        await client.query(
          `UPDATE workspace_builds
           SET status = 'running', attempt = attempt + 1, worker_id = $2, heartbeat_at = now(),
               started_at = coalesce(started_at, now())
           WHERE id = $1`,
          [row.id, workerId],
        );
        await client.query("COMMIT");
        const [build] = await this.#access.db
          .select()
          .from(workspaceBuilds)
          .where(eq(workspaceBuilds.id, row.id));
        keep = true;
        return { build: build!, lock: workspaceLock(client, row.workspace_id) };
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

  /**
   * Marks the build alive. `owned: false` when the row is no longer this worker's (reaped); `cancel` when a
   * cancel was requested (NOTIFY may have been missed).
   */
  async heartbeat(buildId: string, workerId: string): Promise<{ owned: boolean; cancel: boolean }> {
    const { rows } = await this.#pool.query<{ cancel_requested_at: Date | null }>(
      "UPDATE workspace_builds SET heartbeat_at = now() WHERE id = $1 AND worker_id = $2 RETURNING cancel_requested_at",
      [buildId, workerId],
    );
    return { owned: rows.length > 0, cancel: Boolean(rows[0]?.cancel_requested_at) };
  }

  /** Hands a build back, attempt unspent, for another replica to resume (this one is shutting down). */
  async handBack(buildId: string, workerId: string): Promise<void> {
    await this.#pool.query(
      `UPDATE workspace_builds SET status = 'pending', worker_id = NULL, attempt = attempt - 1, not_before = now()
       WHERE id = $1 AND worker_id = $2 AND status = 'running'`,
      [buildId, workerId],
    );
  }

  /** Puts a build back to `pending` until `delayMs` from now, keeping its error. */
  async retryLater(buildId: string, workerId: string, error: string, delayMs: number): Promise<void> {
    await this.#pool.query(
      `UPDATE workspace_builds SET status = 'pending', worker_id = NULL, error = $3,
         not_before = now() + ($4::int * interval '1 millisecond')
       WHERE id = $1 AND worker_id = $2 AND status = 'running'`,
      [buildId, workerId, error, delayMs],
    );
  }

  async status(buildId: string): Promise<BuildRow["status"] | undefined> {
    this.#access.require("build.run", "build");
    const [row] = await this.#access.db
      .select({ status: workspaceBuilds.status })
      .from(workspaceBuilds)
      .where(eq(workspaceBuilds.id, buildId));
    return row?.status;
  }

  /** The workspace a build changes, whatever its state (a destroy build's workspace is `destroying`). */
  async workspaceOf(build: BuildRow) {
    this.#access.require("build.run", "build");
    const [workspace] = await this.#access.db
      .select()
      .from(workspaces)
      .where(eq(workspaces.id, build.workspaceId));
    if (!workspace) throw new Error(`workspace ${build.workspaceId} vanished`);
    return workspace;
  }

  /**
   * Opens the instance a start build brings up, with its agent token's hash. A previous failed start may
   * have left one open: its VM, if any, is being replaced, so it is closed.
   */
  async openInstance(build: BuildRow, agentTokenHash: string): Promise<void> {
    this.#access.require("build.run", "build");
    await this.#access.db.transaction(async (tx) => {
      await tx
        .update(workspaceInstances)
        .set({ stoppedAt: new Date(), agentLifecycle: "off" })
        .where(
          and(eq(workspaceInstances.workspaceId, build.workspaceId), isNull(workspaceInstances.stoppedAt)),
        );
      await tx.insert(workspaceInstances).values({
        workspaceId: build.workspaceId,
        buildId: build.id,
        agentTokenHash,
      });
      // A new box: no Claude in it has said anything yet. A state left from the previous box (a "working"
      // hibernated mid-turn) would show stale and hold off idle autostop.
      await tx
        .update(sessions)
        .set({ claudeState: null, claudeStateDetail: null, claudeStateSince: null })
        .where(eq(sessions.workspaceId, build.workspaceId));
    });
  }

  /**
   * Records a build's outcome in one transaction: the build row, the instance (its addresses after a
   * start, closed after a stop or destroy), the volume, the driver's secret outputs and the workspace's
   * state, which `stateAfter` decides from whether the agent already reported ready. False when the row
   * was no longer this worker's (reaped while it worked): whoever took it over records the outcome.
   */
  async finish(
    build: BuildRow,
    workerId: string,
    outcome: {
      status: "succeeded" | "failed" | "canceled";
      error: string | null;
      outputs: WorkspaceOutputs | null;
      stateAfter: (agentReady: boolean) => WorkspaceState;
    },
  ): Promise<boolean> {
    this.#access.require("build.run", "build");
    const { status, error, outputs } = outcome;
    return this.#access.db.transaction(async (tx) => {
      const [updated] = await tx
        .update(workspaceBuilds)
        .set({ status, error, finishedAt: new Date(), heartbeatAt: new Date() })
        .where(
          and(
            eq(workspaceBuilds.id, build.id),
            eq(workspaceBuilds.workerId, workerId),
            eq(workspaceBuilds.status, "running"),
          ),
        )
        .returning();
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
          await storeWorkspaceSecrets(tx, this.#access.secretBox, build.workspaceId, prefixed);
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
      const next = outcome.stateAfter(agentReady);
      await tx
        .update(workspaces)
        .set({ state: next, stateChangedAt: now, ...(next === "destroyed" ? { destroyedAt: now } : {}) })
        .where(eq(workspaces.id, build.workspaceId));
      return true;
    });
  }

  /**
   * What a build does, for metrics that must tell a wake from a create (both are `start`): a start before
   * the workspace's first successful start creates it (retries of a failed create included), any later one
   * wakes it.
   */
  async operationOf(buildId: string): Promise<BuildOperation> {
    this.#access.require("build.run", "build");
    const { rows } = await this.#pool.query<{ transition: BuildTransition; woken: boolean }>(
      `SELECT b.transition, EXISTS (
         SELECT 1 FROM workspace_builds p WHERE p.workspace_id = b.workspace_id AND p.transition = 'start'
           AND p.status = 'succeeded' AND p.number < b.number) AS woken
       FROM workspace_builds b WHERE b.id = $1`,
      [buildId],
    );
    const row = rows[0];
    if (!row) throw new Error(`build ${buildId} vanished`);
    if (row.transition === "start") return row.woken ? "wake" : "create";
    return row.transition === "stop" ? "hibernate" : "destroy";
  }

  /** Running builds, with whether their heartbeat is older than `staleAfterMs`: the reaper's candidates. */
  async running(staleAfterMs: number, quietAfterMs = 0): Promise<RunningBuild[]> {
    const { rows } = await this.#pool.query<{
      id: string;
      workspace_id: string;
      attempt: number;
      stale: boolean;
      quiet: boolean;
    }>(
      `SELECT id, workspace_id, attempt, heartbeat_at < now() - ($1::int * interval '1 millisecond') AS stale,
              heartbeat_at <= now() - ($2::int * interval '1 millisecond') AS quiet
       FROM workspace_builds WHERE status = 'running'`,
      [staleAfterMs, quietAfterMs],
    );
    return rows.map((r) => ({
      id: r.id,
      workspaceId: r.workspace_id,
      attempt: r.attempt,
      stale: r.stale,
      quiet: r.quiet,
    }));
  }

  /** Whether nobody holds the workspace's build lock: a running build's worker died with its connection. */
  async isOrphaned(workspaceId: string): Promise<boolean> {
    const client = await this.#pool.connect();
    try {
      const { rows } = await client.query<{ ok: boolean }>(
        "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok",
        [lockKey(workspaceId)],
      );
      if (rows[0]!.ok)
        await client.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [lockKey(workspaceId)]);
      return rows[0]!.ok;
    } finally {
      client.release();
    }
  }

  /** Requeues a running build whose worker is gone; false if it is no longer running. */
  async requeueOrphan(buildId: string): Promise<boolean> {
    const { rowCount } = await this.#pool.query(
      `UPDATE workspace_builds SET status = 'pending', worker_id = NULL, not_before = now()
       WHERE id = $1 AND status = 'running'`,
      [buildId],
    );
    return Boolean(rowCount);
  }

  /** Fails a running build the reaper gave up on, and its workspace; its transition, or null if not running. */
  async failReaped(buildId: string, workspaceId: string, reason: string): Promise<BuildTransition | null> {
    const client = await this.#pool.connect();
    try {
      await client.query("BEGIN");
      const { rows } = await client.query<{ transition: BuildTransition }>(
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
      return rows[0]?.transition ?? null;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  /** The seq the next log line of a build gets, so a resumed build appends rather than overwrites. */
  async nextLogSeq(buildId: string): Promise<number> {
    const { rows } = await this.#pool.query<{ next: number }>(
      "SELECT coalesce(max(seq), 0) + 1 AS next FROM workspace_build_logs WHERE build_id = $1",
      [buildId],
    );
    return rows[0]!.next;
  }

  /** Stores log lines numbered from `firstSeq` and announces them to followers, in one statement. */
  async appendLog(buildId: string, firstSeq: number, lines: LogLineRow[]): Promise<void> {
    const values: unknown[] = [];
    const rows = lines.map((l, i) => {
      values.push(buildId, firstSeq + i, l.level, l.stage, l.message);
      const o = i * 5;
      return `($${o + 1}, $${o + 2}, $${o + 3}, $${o + 4}, $${o + 5})`;
    });
    await this.#pool.query(
      `WITH ins AS (INSERT INTO workspace_build_logs (build_id, seq, level, stage, message) VALUES ${rows.join(", ")} RETURNING 1)
       SELECT pg_notify('${BUILD_LOG_CHANNEL}', $1::text) FROM (SELECT 1) x WHERE EXISTS (SELECT 1 FROM ins)`,
      values,
    );
  }
}

function workspaceLock(client: pg.PoolClient, workspaceId: string): WorkspaceLock {
  let lost = false;
  const watchers: Array<() => void> = [];
  const onGone = () => {
    if (lost) return;
    lost = true;
    for (const cb of watchers.splice(0)) cb();
  };
  client.on("error", onGone);
  client.on("end", onGone);
  return {
    onLost: (cb) => {
      if (lost) cb();
      else watchers.push(cb);
    },
    release: async () => {
      client.off("error", onGone);
      client.off("end", onGone);
      if (!lost) {
        await client
          .query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [lockKey(workspaceId)])
          .catch(() => {
            lost = true;
          });
      }
      // A dead connection is not handed back to the pool.
      client.release(lost ? new Error("workspace lock connection lost") : undefined);
    },
  };
}
