/**
 * What operators (`system:operator`: `berth stacks` and admins through the admin API) read and write:
 * any workspace whatever its state, the list of live records, the workspace's build lock for a repair,
 * and the rows a forget closes.
 */
import { and, eq, isNull, sql } from "drizzle-orm";
import { Conflict, NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Access } from "./access.ts";
import type { WorkspaceRow } from "./rows.ts";
import { workspaceBuilds, workspaceInstances, workspaces, workspaceVolumes } from "./schema.ts";

export class OperatorStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /** A workspace in any state, destroyed included: operators clean up after those too. */
  async workspace(id: string): Promise<WorkspaceRow> {
    this.#access.require("workspace.operate", "workspace");
    if (!isUuid(id)) throw new NotFound("workspace");
    const [row] = await this.#access.db.select().from(workspaces).where(eq(workspaces.id, id));
    if (!row) throw new NotFound("workspace");
    return row;
  }

  /** Every live record, for the side-by-side listing with what the driver observes. */
  async liveWorkspaces(): Promise<Array<{ id: string; ownerId: string; state: string }>> {
    this.#access.require("workspace.operate", "workspace");
    return this.#access.db
      .select({ id: workspaces.id, ownerId: workspaces.ownerId, state: workspaces.state })
      .from(workspaces)
      .where(sql`${workspaces.state} <> 'destroyed'`);
  }

  /**
   * Runs `fn` holding the workspace's build lock, so no build runs meanwhile. A build that just finished
   * may hold the lock a moment longer: waits up to `waitMs` before refusing with a Conflict.
   */
  async whileNoBuild<T>(workspaceId: string, fn: () => Promise<T>, waitMs = 5_000): Promise<T> {
    this.#access.require("workspace.operate", "workspace");
    const key = `workspace:${workspaceId}`;
    const client = await this.#access.pool.connect();
    try {
      const deadline = Date.now() + waitMs;
      for (;;) {
        const { rows } = await client.query<{ ok: boolean }>(
          "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok",
          [key],
        );
        if (rows[0]!.ok) break;
        if (Date.now() > deadline) {
          throw new Conflict("build_running", "a build holds this workspace; cancel it first");
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      try {
        return await fn();
      } finally {
        await client.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [key]);
      }
    } finally {
      client.release();
    }
  }

  /**
   * A workspace left in a transitional state with no build in flight becomes `failed`, from which its
   * owner can act again. The updated row, or undefined when it was not stuck.
   */
  async failIfStuck(workspaceId: string): Promise<WorkspaceRow | undefined> {
    this.#access.require("workspace.operate", "workspace");
    const [updated] = await this.#access.db
      .update(workspaces)
      .set({ state: "failed", stateChangedAt: new Date() })
      .where(
        and(
          eq(workspaces.id, workspaceId),
          sql`${workspaces.state} IN ('provisioning','starting','hibernating','waking','destroying')`,
          sql`NOT EXISTS (SELECT 1 FROM ${workspaceBuilds} b WHERE b.workspace_id = ${workspaceId} AND b.status IN ('pending','running'))`,
        ),
      )
      .returning();
    return updated;
  }

  /**
   * Drops the record without touching the cloud: builds in flight are canceled, the open instance and the
   * volume are closed, and the workspace becomes `destroyed`. Run it in the transaction that audits it.
   */
  async forget(workspaceId: string): Promise<void> {
    this.#access.require("workspace.operate", "workspace");
    const db = this.#access.db;
    const now = new Date();
    await db
      .update(workspaceBuilds)
      .set({ status: "canceled", finishedAt: now, error: "workspace forgotten by an operator" })
      .where(
        and(
          eq(workspaceBuilds.workspaceId, workspaceId),
          sql`${workspaceBuilds.status} IN ('pending','running')`,
        ),
      );
    await db
      .update(workspaceInstances)
      .set({ stoppedAt: now, agentLifecycle: "off" })
      .where(and(eq(workspaceInstances.workspaceId, workspaceId), isNull(workspaceInstances.stoppedAt)));
    await db
      .update(workspaceVolumes)
      .set({ deletedAt: now })
      .where(and(eq(workspaceVolumes.workspaceId, workspaceId), isNull(workspaceVolumes.deletedAt)));
    await db
      .update(workspaces)
      .set({ state: "destroyed", destroyedAt: now, stateChangedAt: now })
      .where(eq(workspaces.id, workspaceId));
  }
}
