/**
 * The one authorization layer (after Coder's dbauthz): every read of a user-owned resource goes through an
 * `OwnerScope` bound to the actor, which only ever returns rows the actor owns. Anything else, including a
 * malformed id, is indistinguishable from a missing row: 404, never 403.
 */

import { and, asc, desc, eq, isNull, ne } from "drizzle-orm";
import type { Actor } from "../domain/identity/actor.ts";
import { NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Db } from "./client.ts";
import { previews, sessions, workspaceBuilds, workspaces } from "./schema.ts";

export type WorkspaceRow = typeof workspaces.$inferSelect;
export type SessionRow = typeof sessions.$inferSelect;
export type PreviewRow = typeof previews.$inferSelect;
export type BuildRow = typeof workspaceBuilds.$inferSelect;

export class OwnerScope {
  readonly actor: Actor;
  readonly #db: Db;

  constructor(db: Db, actor: Actor) {
    this.#db = db;
    this.actor = actor;
  }

  /** Live workspaces (destroyed ones are history, not resources). */
  async listWorkspaces(): Promise<WorkspaceRow[]> {
    return this.#db
      .select()
      .from(workspaces)
      .where(and(eq(workspaces.ownerId, this.actor.userId), ne(workspaces.state, "destroyed")))
      .orderBy(asc(workspaces.createdAt));
  }

  async workspace(id: string): Promise<WorkspaceRow> {
    if (!isUuid(id)) throw new NotFound("workspace");
    const [row] = await this.#db
      .select()
      .from(workspaces)
      .where(
        and(
          eq(workspaces.id, id),
          eq(workspaces.ownerId, this.actor.userId),
          ne(workspaces.state, "destroyed"),
        ),
      );
    if (!row) throw new NotFound("workspace");
    return row;
  }

  /** Builds stay readable after a destroy, so the user can see how it went. */
  async build(id: string): Promise<BuildRow> {
    if (!isUuid(id)) throw new NotFound("build");
    const [row] = await this.#db
      .select({ build: workspaceBuilds })
      .from(workspaceBuilds)
      .innerJoin(workspaces, eq(workspaceBuilds.workspaceId, workspaces.id))
      .where(and(eq(workspaceBuilds.id, id), eq(workspaces.ownerId, this.actor.userId)));
    if (!row) throw new NotFound("build");
    return row.build;
  }

  async buildsOf(workspaceId: string, limit = 50): Promise<BuildRow[]> {
    const ws = await this.workspace(workspaceId);
    return this.#db
      .select()
      .from(workspaceBuilds)
      .where(eq(workspaceBuilds.workspaceId, ws.id))
      .orderBy(desc(workspaceBuilds.number))
      .limit(limit);
  }

  async session(id: string): Promise<{ session: SessionRow; workspace: WorkspaceRow }> {
    if (!isUuid(id)) throw new NotFound("session");
    const [row] = await this.#db
      .select({ session: sessions, workspace: workspaces })
      .from(sessions)
      .innerJoin(workspaces, eq(sessions.workspaceId, workspaces.id))
      .where(and(eq(sessions.id, id), eq(workspaces.ownerId, this.actor.userId), isNull(sessions.closedAt)));
    if (!row) throw new NotFound("session");
    return row;
  }

  async sessionsOf(workspaceId: string): Promise<SessionRow[]> {
    const ws = await this.workspace(workspaceId);
    return this.#db
      .select()
      .from(sessions)
      .where(and(eq(sessions.workspaceId, ws.id), isNull(sessions.closedAt)))
      .orderBy(asc(sessions.createdAt));
  }

  async preview(id: string): Promise<{ preview: PreviewRow; workspace: WorkspaceRow }> {
    if (!isUuid(id)) throw new NotFound("preview");
    const [row] = await this.#db
      .select({ preview: previews, workspace: workspaces })
      .from(previews)
      .innerJoin(workspaces, eq(previews.workspaceId, workspaces.id))
      .where(and(eq(previews.id, id), eq(workspaces.ownerId, this.actor.userId), isNull(previews.closedAt)));
    if (!row) throw new NotFound("preview");
    return row;
  }

  async previewsOf(workspaceId: string): Promise<PreviewRow[]> {
    const ws = await this.workspace(workspaceId);
    return this.#db
      .select()
      .from(previews)
      .where(and(eq(previews.workspaceId, ws.id), isNull(previews.closedAt)))
      .orderBy(desc(previews.createdAt));
  }
}
