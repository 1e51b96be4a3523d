/**
 * Voice input through the authorization layer: a transcript queued as the agent's "keys" action for a
 * session's pane (box/protocol.ts `sendKeysAction`), and the seconds of speech a user transcribed
 * (`voice_usage`, read for the daily quota and, later, billing).
 */
import { and, eq, gte, isNull, sql } from "drizzle-orm";
import { NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Access } from "./access.ts";
import { agentActions, sessions, voiceUsage, workspaces } from "./schema.ts";

export interface QueuedKeys {
  actionId: string;
  workspaceId: string;
  sessionName: string;
}

export class VoiceStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /**
   * Queues `keys` to be typed literally into the Claude pane of an open session the actor may type into;
   * the box agent picks it up with its next heartbeat. Someone else's session is NotFound.
   */
  async queueKeys(sessionId: string, input: { keys: string; enter: boolean }): Promise<QueuedKeys> {
    const scope = this.#access.workspaceCondition("session.input", "session", workspaces.id);
    if (!isUuid(sessionId)) throw new NotFound("session");
    const [row] = await this.#access.db
      .select({ workspaceId: sessions.workspaceId, name: sessions.name })
      .from(sessions)
      .innerJoin(workspaces, eq(sessions.workspaceId, workspaces.id))
      .where(and(eq(sessions.id, sessionId), isNull(sessions.closedAt), scope));
    if (!row) throw new NotFound("session");
    const [action] = await this.#access.db
      .insert(agentActions)
      .values({
        workspaceId: row.workspaceId,
        kind: "keys",
        payload: { session: row.name, pane: "claude", keys: input.keys, enter: input.enter },
      })
      .returning({ id: agentActions.id });
    return { actionId: action!.id, workspaceId: row.workspaceId, sessionName: row.name };
  }

  /** Records `seconds` of transcribed speech by the actor (a user), optionally in one of their workspaces. */
  async recordUsage(usage: { workspaceId: string | null; seconds: number; startedAt: Date }): Promise<void> {
    this.#access.require("voice.use", "voice");
    const { userId } = this.#access.user("voice");
    if (usage.workspaceId) await this.#access.requireWorkspace("voice.use", "workspace", usage.workspaceId);
    await this.#access.db.insert(voiceUsage).values({
      userId,
      workspaceId: usage.workspaceId,
      seconds: usage.seconds,
      startedAt: usage.startedAt,
    });
  }

  /** The actor's transcribed seconds from streams started at or after `since`. */
  async secondsSince(since: Date): Promise<number> {
    this.#access.require("voice.use", "voice");
    const { userId } = this.#access.user("voice");
    const [row] = await this.#access.db
      .select({ total: sql<string>`coalesce(sum(${voiceUsage.seconds}), 0)` })
      .from(voiceUsage)
      .where(and(eq(voiceUsage.userId, userId), gte(voiceUsage.startedAt, since)));
    return Number(row?.total ?? 0);
  }
}
