/**
 * Builds as their requesters see them: read (also after a destroy, so the user can see how it went),
 * cancel, and the log lines a follower streams.
 */
import { and, desc, eq, gt, sql } from "drizzle-orm";
import { NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Access } from "./access.ts";
import { BUILD_CANCEL_CHANNEL } from "./channels.ts";
import type { BuildRow, BuildStatus } from "./rows.ts";
import { workspaceBuildLogs, workspaceBuilds, workspaces } from "./schema.ts";

export interface BuildLogLine {
  seq: number;
  at: Date;
  level: string;
  stage: string | null;
  message: string;
}

export class BuildStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  async get(id: string): Promise<BuildRow> {
    const scope = this.#access.workspaceCondition("build.read", "build", workspaceBuilds.workspaceId);
    if (!isUuid(id)) throw new NotFound("build");
    const [row] = await this.#access.db
      .select()
      .from(workspaceBuilds)
      .where(and(eq(workspaceBuilds.id, id), scope));
    if (!row) throw new NotFound("build");
    return row;
  }

  /** The newest builds of a live workspace. */
  async listOf(workspaceId: string, limit = 50): Promise<BuildRow[]> {
    await this.#access.requireWorkspace("build.read", "workspace", workspaceId);
    return this.#access.db
      .select()
      .from(workspaceBuilds)
      .where(eq(workspaceBuilds.workspaceId, workspaceId))
      .orderBy(desc(workspaceBuilds.number))
      .limit(limit);
  }

  /** Locks a build the actor may cancel (until the transaction ends). */
  async lockForCancel(id: string): Promise<BuildRow> {
    const scope = this.#access.workspaceCondition("build.cancel", "build", workspaceBuilds.workspaceId);
    if (!isUuid(id)) throw new NotFound("build");
    const [row] = await this.#access.db
      .select()
      .from(workspaceBuilds)
      .where(and(eq(workspaceBuilds.id, id), scope))
      .for("update");
    if (!row) throw new NotFound("build");
    return row;
  }

  /**
   * Cancels a build that has not started, and marks its workspace `failed`: what the canceled request was
   * going to change is unknown to the user, and `failed` lets them wake, hibernate or destroy.
   */
  async cancelPending(id: string): Promise<BuildRow> {
    const scope = this.#access.workspaceCondition("build.cancel", "build", workspaceBuilds.workspaceId);
    const now = new Date();
    const [updated] = await this.#access.db
      .update(workspaceBuilds)
      .set({
        status: "canceled",
        cancelRequestedAt: now,
        finishedAt: now,
        error: "canceled before it started",
      })
      .where(and(eq(workspaceBuilds.id, id), eq(workspaceBuilds.status, "pending"), scope))
      .returning();
    if (!updated) throw new NotFound("build");
    await this.#access.db
      .update(workspaces)
      .set({ state: "failed", stateChangedAt: now })
      .where(eq(workspaces.id, updated.workspaceId));
    return updated;
  }

  /** Asks the worker running a build to stop: the flag its heartbeat re-checks, and a NOTIFY at commit. */
  async requestCancel(id: string): Promise<BuildRow> {
    const scope = this.#access.workspaceCondition("build.cancel", "build", workspaceBuilds.workspaceId);
    const [updated] = await this.#access.db
      .update(workspaceBuilds)
      .set({ cancelRequestedAt: new Date() })
      .where(and(eq(workspaceBuilds.id, id), scope))
      .returning();
    if (!updated) throw new NotFound("build");
    await this.#access.db.execute(sql`SELECT pg_notify(${BUILD_CANCEL_CHANNEL}, ${id})`);
    return updated;
  }

  /** Up to `limit` log lines after `afterSeq`, in order. */
  async logLines(buildId: string, afterSeq: number, limit: number): Promise<BuildLogLine[]> {
    const scope = this.#logScope();
    return this.#access.db
      .select({
        seq: workspaceBuildLogs.seq,
        at: workspaceBuildLogs.at,
        level: workspaceBuildLogs.level,
        stage: workspaceBuildLogs.stage,
        message: workspaceBuildLogs.message,
      })
      .from(workspaceBuildLogs)
      .where(and(eq(workspaceBuildLogs.buildId, buildId), gt(workspaceBuildLogs.seq, afterSeq), scope))
      .orderBy(workspaceBuildLogs.seq)
      .limit(limit);
  }

  /** How many log lines follow `afterSeq`. */
  async countLogLinesAfter(buildId: string, afterSeq: number): Promise<number> {
    const scope = this.#logScope();
    const [{ n } = { n: 0 }] = await this.#access.db
      .select({ n: sql<number>`count(*)::int` })
      .from(workspaceBuildLogs)
      .where(and(eq(workspaceBuildLogs.buildId, buildId), gt(workspaceBuildLogs.seq, afterSeq), scope));
    return n;
  }

  /** The build's status, or undefined when the actor cannot see it. */
  async status(buildId: string): Promise<BuildStatus | undefined> {
    const scope = this.#access.workspaceCondition("build.read", "build", workspaceBuilds.workspaceId);
    const [row] = await this.#access.db
      .select({ status: workspaceBuilds.status })
      .from(workspaceBuilds)
      .where(and(eq(workspaceBuilds.id, buildId), scope));
    return row?.status;
  }

  /** Log lines are reachable when their build is. */
  #logScope() {
    const scope = this.#access.workspaceCondition("build.read", "build", workspaceBuilds.workspaceId);
    return scope
      ? sql`${workspaceBuildLogs.buildId} IN (SELECT ${workspaceBuilds.id} FROM ${workspaceBuilds} WHERE ${scope})`
      : undefined;
  }
}
