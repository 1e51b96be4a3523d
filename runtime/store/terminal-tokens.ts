/**
 * The ledger of terminal socket tokens (`terminal_tokens`): a row per minted token, recorded by the user
 * who may open the session, spent atomically on first use by the credential check (`system:auth`), and
 * deleted a few minutes after expiry. Signing and verifying the tokens is the relay's
 * (runtime/gateway/terminal/tokens.ts).
 */
import { and, eq, gt, isNull, lt, sql } from "drizzle-orm";
import { NotFound } from "../platform/errors.ts";
import type { Access } from "./access.ts";
import { sessions, terminalTokens } from "./schema.ts";

export interface RecordedTerminalToken {
  jti: string;
  userId: string;
  sessionId: string;
  expiresAt: Date;
}

export class TerminalTokenStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /** Records a token minted for the acting user on an open session they may open. */
  async record(token: RecordedTerminalToken): Promise<void> {
    const scope = this.#access.workspaceCondition("session.open", "session", sessions.workspaceId);
    const { userId } = this.#access.user("session");
    if (token.userId !== userId) throw new NotFound("session");
    const [session] = await this.#access.db
      .select({ id: sessions.id })
      .from(sessions)
      .where(and(eq(sessions.id, token.sessionId), isNull(sessions.closedAt), scope));
    if (!session) throw new NotFound("session");
    await this.#access.db.insert(terminalTokens).values(token);
  }

  /**
   * Spends the token: true exactly once, for an issued, unexpired, unused token whose row names the same
   * user and session. Concurrent uses race on one row; Postgres lets one UPDATE win.
   */
  async spend(token: Omit<RecordedTerminalToken, "expiresAt">): Promise<boolean> {
    this.#access.require("credentials.verify", "terminal token");
    const rows = await this.#access.db
      .update(terminalTokens)
      .set({ usedAt: sql`now()` })
      .where(
        and(
          eq(terminalTokens.jti, token.jti),
          eq(terminalTokens.userId, token.userId),
          eq(terminalTokens.sessionId, token.sessionId),
          isNull(terminalTokens.usedAt),
          gt(terminalTokens.expiresAt, sql`now()`),
        ),
      )
      .returning({ jti: terminalTokens.jti });
    return rows.length === 1;
  }

  /** Deletes rows that expired before `before`. */
  async purgeExpired(before: Date): Promise<void> {
    this.#access.require("credentials.verify", "terminal token");
    await this.#access.db.delete(terminalTokens).where(lt(terminalTokens.expiresAt, before));
  }
}
