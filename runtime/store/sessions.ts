/**
 * Sessions (one tmux session on the box per open row) through the authorization layer: the owner's
 * reads and writes, the agent's view of its workspace's sessions, and the relay's activity bookkeeping.
 */
import { and, asc, eq, isNull, sql } from "drizzle-orm";
import type { ClaudeState } from "../../box/protocol.ts";
import { NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Access } from "./access.ts";
import { SESSION_STATE_CHANNEL } from "./channels.ts";
import type { SessionRow, WorkspaceRow } from "./rows.ts";
import { sessions, workspaces } from "./schema.ts";

/** What the database knows about a relayed terminal whose box connection ended. */
export interface SessionLiveness {
  closed: boolean;
  state: string;
  /** The workspace has an open instance. */
  running: boolean;
}

export class SessionStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /** An open session and its workspace. */
  async get(id: string): Promise<{ session: SessionRow; workspace: WorkspaceRow }> {
    const scope = this.#access.workspaceCondition("session.read", "session", workspaces.id);
    if (!isUuid(id)) throw new NotFound("session");
    const [row] = await this.#access.db
      .select({ session: sessions, workspace: workspaces })
      .from(sessions)
      .innerJoin(workspaces, eq(sessions.workspaceId, workspaces.id))
      .where(and(eq(sessions.id, id), isNull(sessions.closedAt), scope));
    if (!row) throw new NotFound("session");
    return row;
  }

  /** The open sessions of a live workspace, oldest first. */
  async listOf(workspaceId: string): Promise<SessionRow[]> {
    await this.#access.requireWorkspace("session.read", "workspace", workspaceId);
    return this.#access.db
      .select()
      .from(sessions)
      .where(and(eq(sessions.workspaceId, workspaceId), isNull(sessions.closedAt)))
      .orderBy(asc(sessions.createdAt));
  }

  /** The open session of that name in the workspace, if any. */
  async findOpenByName(workspaceId: string, name: string): Promise<string | null> {
    const scope = this.#access.workspaceCondition("session.read", "session", sessions.workspaceId);
    const [row] = await this.#access.db
      .select({ id: sessions.id })
      .from(sessions)
      .where(
        and(eq(sessions.workspaceId, workspaceId), eq(sessions.name, name), isNull(sessions.closedAt), scope),
      );
    return row?.id ?? null;
  }

  /** Locks the open sessions of a live workspace (until the transaction ends), to count and name them. */
  async lockOpen(workspaceId: string): Promise<Array<{ id: string; name: string }>> {
    await this.#access.requireWorkspace("session.write", "workspace", workspaceId);
    return this.#access.db
      .select({ id: sessions.id, name: sessions.name })
      .from(sessions)
      .where(and(eq(sessions.workspaceId, workspaceId), isNull(sessions.closedAt)))
      .for("update");
  }

  async insert(
    workspaceId: string,
    name: string,
    guided?: { project: string | null; task: string },
  ): Promise<SessionRow> {
    await this.#access.requireWorkspace("session.write", "workspace", workspaceId);
    const [row] = await this.#access.db
      .insert(sessions)
      .values({
        workspaceId,
        name,
        createdById: this.#access.initiatorId,
        ...(guided ? { mode: "guided" as const, project: guided.project, task: guided.task } : {}),
      })
      .returning();
    return row!;
  }

  async close(id: string): Promise<void> {
    const scope = this.#access.workspaceCondition("session.write", "session", sessions.workspaceId);
    const closed = await this.#access.db
      .update(sessions)
      .set({ closedAt: new Date() })
      .where(and(eq(sessions.id, id), isNull(sessions.closedAt), scope))
      .returning({ id: sessions.id });
    if (closed.length === 0) throw new NotFound("session");
  }

  /**
   * Writes terminal activity to `sessions.last_activity_at` and `workspaces.last_activity_at` in one
   * statement, never moving either backwards (autostop reads them).
   */
  async recordActivity(activity: Array<{ sessionId: string; workspaceId: string; at: Date }>): Promise<void> {
    this.#access.require("session.activity", "session");
    await this.#access.pool.query(
      `WITH v AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS v(session_id, workspace_id, at)),
            s AS (UPDATE sessions s SET last_activity_at = v.at FROM v
                   WHERE s.id = v.session_id AND (s.last_activity_at IS NULL OR s.last_activity_at < v.at))
       UPDATE workspaces w SET last_activity_at = m.at
         FROM (SELECT workspace_id, max(at) AS at FROM v GROUP BY workspace_id) m
        WHERE w.id = m.workspace_id AND (w.last_activity_at IS NULL OR w.last_activity_at < m.at)`,
      [
        activity.map((a) => a.sessionId),
        activity.map((a) => a.workspaceId),
        activity.map((a) => a.at.toISOString()),
      ],
    );
  }

  /**
   * The agent's report of Claude's state in the open session `name` of its workspace, since `at`. A report
   * older than the stored one changes nothing (events arrive in order, but a resend must not go back). The
   * workspace counts as active at `at` (autostop), any autostop warning is void, and the owner's feeds are
   * told (`<owner id>:<session id>`, at commit). Returns the session's id and the state it had, or null.
   */
  async setClaudeState(
    name: string,
    state: ClaudeState,
    detail: string | null,
    at: Date,
  ): Promise<{ id: string; previous: ClaudeState | null; previousSince: Date | null } | null> {
    this.#access.require("session.claude", "session");
    const { workspaceId } = this.#access.agent("session");
    const { rows } = await this.#access.db.execute<{
      id: string;
      owner_id: string;
      previous: ClaudeState | null;
      previous_since: string | null;
    }>(sql`
      WITH old AS (
        SELECT s.id, s.claude_state, s.claude_state_since FROM sessions s
         WHERE s.workspace_id = ${workspaceId} AND s.name = ${name} AND s.closed_at IS NULL
           AND (s.claude_state_since IS NULL OR s.claude_state_since <= ${at.toISOString()}::timestamptz)
         FOR UPDATE),
      upd AS (
        UPDATE sessions s SET claude_state = ${state}, claude_state_detail = ${detail},
               claude_state_since = ${at.toISOString()}::timestamptz
          FROM old WHERE s.id = old.id
        RETURNING s.id),
      ws AS (
        UPDATE workspaces w
           SET last_activity_at = GREATEST(w.last_activity_at, ${at.toISOString()}::timestamptz),
               autostop_warned_at = NULL
         WHERE w.id = ${workspaceId} AND EXISTS (SELECT 1 FROM upd)
        RETURNING w.owner_id)
      SELECT old.id, ws.owner_id, old.claude_state AS previous, old.claude_state_since AS previous_since
        FROM old, ws`);
    const row = rows[0];
    if (!row) return null;
    await this.#access.db.execute(
      sql`SELECT pg_notify(${SESSION_STATE_CHANNEL}, ${`${row.owner_id}:${row.id}`})`,
    );
    return {
      id: row.id,
      previous: row.previous,
      previousSince: row.previous_since ? new Date(row.previous_since) : null,
    };
  }

  /** Whether the session is closed and its box asleep, to explain why a relayed terminal ended. */
  async liveness(sessionId: string): Promise<SessionLiveness | null> {
    this.#access.require("session.activity", "session");
    const { rows } = await this.#access.pool.query<SessionLiveness>(
      `SELECT s.closed_at IS NOT NULL AS closed, w.state,
              EXISTS (SELECT 1 FROM workspace_instances i WHERE i.workspace_id = w.id AND i.stopped_at IS NULL) AS running
         FROM sessions s JOIN workspaces w ON w.id = s.workspace_id
        WHERE s.id = $1`,
      [sessionId],
    );
    return rows[0] ?? null;
  }
}
