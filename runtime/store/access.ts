/**
 * What every area of the authorized store holds: the actor, the connection its queries run on (the pool's
 * or a transaction's), and the two checks of policy.ts turned into SQL. An area method first asks for the
 * right (`scopeOf`/`require`), which refuses an actor without it before any query, then adds the returned
 * condition to its statement, so that rows outside the actor's reach are never read or written.
 */
import { and, eq, ne, type SQL, sql } from "drizzle-orm";
import type { AnyPgColumn } from "drizzle-orm/pg-core";
import type pg from "pg";
import { NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { SecretBox } from "../platform/secret-box.ts";
import type { Actor, AgentActor, UserActor } from "./actors.ts";
import type { Executor } from "./client.ts";
import { type Right, type RowScope, rowScope } from "./policy.ts";
import { workspaces } from "./schema.ts";

export class Access {
  readonly actor: Actor;
  readonly db: Executor;
  /**
   * The pool itself: for session-level advisory locks, which need one connection for their whole life, and
   * for the hand-written batch statements of the jobs. What runs on it runs outside any transaction.
   */
  readonly pool: pg.Pool;
  readonly secretBox: SecretBox;

  constructor(deps: { actor: Actor; db: Executor; pool: pg.Pool; secretBox: SecretBox }) {
    this.actor = deps.actor;
    this.db = deps.db;
    this.pool = deps.pool;
    this.secretBox = deps.secretBox;
  }

  /** The rows `right` reaches; NotFound(`what`) without the right. */
  scopeOf(right: Right, what: string): RowScope {
    return rowScope(this.actor, right, what);
  }

  /** NotFound(`what`) unless the actor holds `right`. */
  require(right: Right, what: string): void {
    rowScope(this.actor, right, what);
  }

  /**
   * The condition that keeps `workspaceId` (a column naming a workspace) to the workspaces `right` reaches
   * for this actor; undefined when it reaches every row. NotFound(`what`) without the right.
   */
  workspaceCondition(right: Right, what: string, workspaceId: AnyPgColumn): SQL | undefined {
    const scope = this.scopeOf(right, what);
    switch (scope.kind) {
      case "all":
        return undefined;
      case "workspace":
        return eq(workspaceId, scope.workspaceId);
      case "owner":
        return workspaceId === workspaces.id
          ? eq(workspaces.ownerId, scope.userId)
          : sql`${workspaceId} IN (SELECT ${workspaces.id} FROM ${workspaces} WHERE ${workspaces.ownerId} = ${scope.userId})`;
    }
  }

  /**
   * NotFound(`what`) unless `right` reaches the workspace and it is live. A system actor whose right covers
   * every row is not made to pay a query for it.
   */
  async requireWorkspace(right: Right, what: string, workspaceId: string): Promise<void> {
    const condition = this.workspaceCondition(right, what, workspaces.id);
    if (!isUuid(workspaceId)) throw new NotFound(what);
    if (!condition) return;
    const [row] = await this.db
      .select({ id: workspaces.id })
      .from(workspaces)
      .where(and(eq(workspaces.id, workspaceId), ne(workspaces.state, "destroyed"), condition));
    if (!row) throw new NotFound(what);
  }

  /** The user this actor is; NotFound(`what`) for any other actor (a right only people have). */
  user(what: string): UserActor {
    if (this.actor.kind !== "user") throw new NotFound(what);
    return this.actor;
  }

  /** The agent this actor is; NotFound(`what`) for any other actor. */
  agent(what: string): AgentActor {
    if (this.actor.kind !== "agent") throw new NotFound(what);
    return this.actor;
  }

  /** The users row recorded as having started something (a build, a session): people only. */
  get initiatorId(): string | null {
    if (this.actor.kind === "user") return this.actor.userId;
    if (this.actor.kind === "system") return this.actor.onBehalfOf;
    return null;
  }
}
