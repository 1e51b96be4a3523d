/**
 * Backup runs of a workspace (`backups` rows) and the agent actions that carry them to the box. A user
 * reaches their own workspaces' runs, the agent reports on its own workspace's runs only, the nightly job
 * and the pre-stop hook (`system:backups`) every workspace's. A nightly row is unique per workspace and
 * UTC night (`backups_nightly_once_idx`), so replicas that ask at once create it once.
 */
import { and, desc, eq, inArray, isNull, lt, ne, sql } from "drizzle-orm";
import type { BackupPayload, BackupTrigger } from "../../box/protocol.ts";
import { NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import { pgWhole } from "../platform/pg-values.ts";
import type { Access } from "./access.ts";
import { NOTIFICATION_CHANNEL } from "./channels.ts";
import type { BackupRow } from "./rows.ts";
import { agentActions, backups, notifications, workspaceInstances, workspaces } from "./schema.ts";

/** `integer` columns (duration_ms). */
const INT4_MAX = 2 ** 31 - 1;

export interface RequestedRun {
  backup: BackupRow;
  actionId: string;
}

export class BackupStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /**
   * Asks the box for a backup: a `pending` row and the agent action that carries it, in one transaction.
   * A nightly request names its UTC night; null when that night's row exists already.
   */
  async request(
    workspaceId: string,
    trigger: Exclude<BackupTrigger, "pre-restore">,
    options: { night?: string; prune?: boolean } = {},
  ): Promise<RequestedRun | null> {
    await this.#access.requireWorkspace("backup.run", "workspace", workspaceId);
    return this.#access.db.transaction(async (tx) => {
      const [row] = await tx
        .insert(backups)
        .values({ workspaceId, trigger, night: trigger === "nightly" ? options.night : null })
        .onConflictDoNothing()
        .returning();
      if (!row) return null;
      const [action] = await tx
        .insert(agentActions)
        .values({
          workspaceId,
          kind: "backup",
          payload: { backupId: row.id, trigger, prune: options.prune ?? trigger === "nightly" },
        })
        .returning({ id: agentActions.id });
      const [backup] = await tx
        .update(backups)
        .set({ actionId: action!.id })
        .where(eq(backups.id, row.id))
        .returning();
      return { backup: backup!, actionId: action!.id };
    });
  }

  /** Asks the box for a restore; the row is its safety snapshot's (`pre-restore`). */
  async requestRestore(workspaceId: string, snapshot: string, paths: string[]): Promise<RequestedRun> {
    await this.#access.requireWorkspace("backup.run", "workspace", workspaceId);
    return this.#access.db.transaction(async (tx) => {
      const [row] = await tx.insert(backups).values({ workspaceId, trigger: "pre-restore" }).returning();
      const [action] = await tx
        .insert(agentActions)
        .values({ workspaceId, kind: "restore", payload: { backupId: row!.id, snapshot, paths } })
        .returning({ id: agentActions.id });
      const [backup] = await tx
        .update(backups)
        .set({ actionId: action!.id })
        .where(eq(backups.id, row!.id))
        .returning();
      return { backup: backup!, actionId: action!.id };
    });
  }

  /** A workspace's runs, newest first. */
  async list(workspaceId: string, limit = 50): Promise<BackupRow[]> {
    await this.#access.requireWorkspace("backup.read", "workspace", workspaceId);
    return this.#access.db
      .select()
      .from(backups)
      .where(eq(backups.workspaceId, workspaceId))
      .orderBy(desc(backups.createdAt))
      .limit(limit);
  }

  async find(workspaceId: string, id: string): Promise<BackupRow | null> {
    await this.#access.requireWorkspace("backup.read", "workspace", workspaceId);
    if (!isUuid(id)) return null;
    const [row] = await this.#access.db
      .select()
      .from(backups)
      .where(and(eq(backups.id, id), eq(backups.workspaceId, workspaceId)));
    return row ?? null;
  }

  /**
   * The agent's report on one of its workspace's runs. Returns the row when this report finished it (so
   * metrics and notifications happen once), else null. A finished row never changes again.
   */
  async report(p: BackupPayload): Promise<{ row: BackupRow; finished: boolean } | null> {
    this.#access.require("agent.report", "backup");
    const { workspaceId } = this.#access.agent("backup");
    if (p.operation === "restore") {
      const [row] = await this.#access.db
        .select()
        .from(backups)
        .where(and(eq(backups.id, p.backupId), eq(backups.workspaceId, workspaceId)));
      return row ? { row, finished: p.phase !== "running" } : null;
    }
    const open = and(
      eq(backups.id, p.backupId),
      eq(backups.workspaceId, workspaceId),
      inArray(backups.status, ["pending", "running"]),
    );
    const finished = p.phase !== "running";
    const [row] = await this.#access.db
      .update(backups)
      .set(
        finished
          ? {
              status: p.phase,
              progress: p.phase === "succeeded" ? 1 : null,
              snapshotId: p.snapshotId ?? null,
              bytesAdded: pgWhole(p.bytesAdded),
              files: pgWhole(p.files),
              durationMs: pgWhole(p.durationMs, INT4_MAX),
              error: p.error ?? null,
              finishedAt: new Date(),
            }
          : { status: "running", progress: p.percent ?? null },
      )
      .where(open)
      .returning();
    return row ? { row, finished } : null;
  }

  /** Fails the unfinished run an action carried (the agent reported the action failed, or it timed out). */
  async failRun(id: string, error: string): Promise<BackupRow | null> {
    const condition = this.#access.workspaceCondition("backup.run", "backup", backups.workspaceId);
    if (!isUuid(id)) return null;
    const [row] = await this.#access.db
      .update(backups)
      .set({ status: "failed", error: error.slice(0, 2000), finishedAt: new Date(), progress: null })
      .where(and(eq(backups.id, id), inArray(backups.status, ["pending", "running"]), condition))
      .returning();
    if (row) {
      // The box must not start it later: the action is closed with the run.
      await this.#access.db
        .update(agentActions)
        .set({ completedAt: new Date(), ok: false, error: error.slice(0, 2000) })
        .where(and(eq(agentActions.id, row.actionId ?? row.id), isNull(agentActions.completedAt)));
    }
    return row ?? null;
  }

  /** Fails every unfinished run of a workspace (its box is stopping: nothing will run them). */
  async failOpenRuns(workspaceId: string, error: string): Promise<BackupRow[]> {
    await this.#access.requireWorkspace("backup.run", "workspace", workspaceId);
    const rows = await this.#access.db
      .select({ id: backups.id })
      .from(backups)
      .where(and(eq(backups.workspaceId, workspaceId), inArray(backups.status, ["pending", "running"])));
    const failed: BackupRow[] = [];
    for (const { id } of rows) {
      const row = await this.failRun(id, error);
      if (row) failed.push(row);
    }
    return failed;
  }

  /** The runs the agent's failed actions carried (by action id), failed with the action's error. */
  async failRunsOfActions(failed: Array<{ id: string; error: string | null }>): Promise<BackupRow[]> {
    const { workspaceId } = this.#access.agent("backup");
    const out: BackupRow[] = [];
    for (const f of failed) {
      if (!isUuid(f.id)) continue;
      const [row] = await this.#access.db
        .update(backups)
        .set({
          status: "failed",
          error: (f.error ?? "the box could not run it").slice(0, 2000),
          finishedAt: new Date(),
        })
        .where(
          and(
            eq(backups.actionId, f.id),
            eq(backups.workspaceId, workspaceId),
            inArray(backups.status, ["pending", "running"]),
          ),
        )
        .returning();
      if (row) out.push(row);
    }
    return out;
  }

  /** Whether the workspace has an open instance whose agent is ready (it can run a backup now). */
  async hasLiveAgent(workspaceId: string): Promise<boolean> {
    await this.#access.requireWorkspace("backup.run", "workspace", workspaceId);
    const [row] = await this.#access.db
      .select({ id: workspaceInstances.id })
      .from(workspaceInstances)
      .where(
        and(
          eq(workspaceInstances.workspaceId, workspaceId),
          isNull(workspaceInstances.stoppedAt),
          eq(workspaceInstances.agentLifecycle, "ready"),
        ),
      );
    return Boolean(row);
  }

  /** Workspaces with a live box (an open instance whose agent is ready): who gets a nightly backup. */
  async withLiveBox(): Promise<string[]> {
    this.#access.require("backup.run", "workspace");
    const rows = await this.#access.db
      .select({ id: workspaces.id })
      .from(workspaces)
      .innerJoin(workspaceInstances, eq(workspaceInstances.workspaceId, workspaces.id))
      .where(
        and(
          eq(workspaces.state, "ready"),
          isNull(workspaceInstances.stoppedAt),
          eq(workspaceInstances.agentLifecycle, "ready"),
        ),
      );
    return rows.map((r) => r.id);
  }

  /** How many live workspaces have no successful backup newer than `since`. */
  async countWithoutSuccessSince(since: Date): Promise<number> {
    this.#access.require("backup.read", "workspace");
    const [row] = await this.#access.db
      .select({ n: sql<number>`count(*)::int` })
      .from(workspaces)
      .where(
        and(
          ne(workspaces.state, "destroyed"),
          lt(workspaces.createdAt, since),
          sql`NOT EXISTS (SELECT 1 FROM ${backups} WHERE ${backups.workspaceId} = ${workspaces.id} AND ${backups.status} = 'succeeded' AND ${backups.finishedAt} >= ${since})`,
        ),
      );
    return row?.n ?? 0;
  }

  /**
   * Seconds since the oldest "last successful backup" among live workspaces (one never backed up counts
   * from its creation); 0 without live workspaces. The fleet-wide figure behind the backup-age alert.
   */
  async oldestLastSuccessAgeSeconds(now = new Date()): Promise<number> {
    this.#access.require("backup.read", "workspace");
    const [row] = await this.#access.db
      .select({
        age: sql<number>`coalesce(max(extract(epoch from (${now.toISOString()}::timestamptz - coalesce((SELECT max(${backups.finishedAt}) FROM ${backups} WHERE ${backups.workspaceId} = ${workspaces.id} AND ${backups.status} = 'succeeded'), ${workspaces.createdAt})))), 0)::float8`,
      })
      .from(workspaces)
      .where(ne(workspaces.state, "destroyed"));
    return Math.max(0, row?.age ?? 0);
  }

  /** Tells the workspace's owner (a failed backup, a finished restore); shown like Claude's notifications. */
  async notifyOwner(
    workspaceId: string,
    n: { kind: string; title: string; body: string; dedupeKey: string },
  ): Promise<void> {
    await this.#access.requireWorkspace("backup.run", "workspace", workspaceId);
    const [workspace] = await this.#access.db
      .select({ ownerId: workspaces.ownerId })
      .from(workspaces)
      .where(eq(workspaces.id, workspaceId));
    if (!workspace) throw new NotFound("workspace");
    const [inserted] = await this.#access.db
      .insert(notifications)
      .values({ ...n, sessionId: null, userId: workspace.ownerId, workspaceId })
      .onConflictDoNothing({ target: [notifications.workspaceId, notifications.dedupeKey] })
      .returning({ id: notifications.id });
    if (inserted)
      await this.#access.db.execute(
        sql`SELECT pg_notify(${NOTIFICATION_CHANNEL}, ${`${workspace.ownerId}:${inserted.id}`})`,
      );
  }
}
