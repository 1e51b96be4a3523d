/**
 * Personal API tokens (store/schema.ts `api_tokens`): a user creates, lists and revokes their own; the
 * authenticator (`system:auth`) finds a token by the SHA-256 of its secret. The secret itself is never
 * stored, so a database leak yields no usable token; the row keeps a short prefix for display.
 */
import { createHash } from "node:crypto";
import { and, desc, eq, isNull, lt, or, sql } from "drizzle-orm";
import { isUuid } from "../platform/ids.ts";
import type { Access } from "./access.ts";
import { apiTokens } from "./schema.ts";

export type ApiTokenRow = Omit<typeof apiTokens.$inferSelect, "secretHash">;

/** The lookup key of a secret: SHA-256 suffices, the secret being 256 random bits (no guessing to slow down). */
export function hashApiTokenSecret(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

const listed = {
  id: apiTokens.id,
  userId: apiTokens.userId,
  name: apiTokens.name,
  prefix: apiTokens.prefix,
  createdAt: apiTokens.createdAt,
  lastUsedAt: apiTokens.lastUsedAt,
  expiresAt: apiTokens.expiresAt,
  revokedAt: apiTokens.revokedAt,
};

export class ApiTokenStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /** The signed-in user's tokens, newest first, revoked ones included (they show as revoked). */
  async list(): Promise<ApiTokenRow[]> {
    this.#access.require("api_token.manage", "token");
    const { userId } = this.#access.user("token");
    return this.#access.db
      .select(listed)
      .from(apiTokens)
      .where(eq(apiTokens.userId, userId))
      .orderBy(desc(apiTokens.createdAt));
  }

  /** Tokens of the signed-in user that still work (neither revoked nor expired): the per-user cap counts these. */
  async countActive(): Promise<number> {
    this.#access.require("api_token.manage", "token");
    const { userId } = this.#access.user("token");
    const [row] = await this.#access.db
      .select({ n: sql<number>`count(*)::int` })
      .from(apiTokens)
      .where(
        and(eq(apiTokens.userId, userId), isNull(apiTokens.revokedAt), sql`${apiTokens.expiresAt} > now()`),
      );
    return row?.n ?? 0;
  }

  /** Stores a new token for the signed-in user; the caller made the secret and shows it once. */
  async create(input: {
    name: string;
    secret: string;
    prefix: string;
    expiresAt: Date;
  }): Promise<ApiTokenRow> {
    this.#access.require("api_token.manage", "token");
    const { userId } = this.#access.user("token");
    const [row] = await this.#access.db
      .insert(apiTokens)
      .values({
        userId,
        name: input.name,
        secretHash: hashApiTokenSecret(input.secret),
        prefix: input.prefix,
        expiresAt: input.expiresAt,
      })
      .returning(listed);
    return row!;
  }

  /**
   * Revokes one of the signed-in user's tokens; NotFound-worthy null when it is not theirs or does not
   * exist. Revoking an already revoked token keeps its first revocation time.
   */
  async revoke(id: string): Promise<ApiTokenRow | null> {
    this.#access.require("api_token.manage", "token");
    const { userId } = this.#access.user("token");
    if (!isUuid(id)) return null;
    const [row] = await this.#access.db
      .update(apiTokens)
      .set({ revokedAt: sql`coalesce(${apiTokens.revokedAt}, now())` })
      .where(and(eq(apiTokens.id, id), eq(apiTokens.userId, userId)))
      .returning(listed);
    return row ?? null;
  }

  /** The token whose secret this is, whatever its state (the caller explains revoked and expired). */
  async findBySecret(secret: string): Promise<ApiTokenRow | null> {
    this.#access.require("credentials.verify", "token");
    const [row] = await this.#access.db
      .select(listed)
      .from(apiTokens)
      .where(eq(apiTokens.secretHash, hashApiTokenSecret(secret)));
    return row ?? null;
  }

  /**
   * Records a use, at most once per `everySeconds` per token: a busy script would otherwise write a row on
   * every request. The condition makes concurrent requests write once.
   */
  async touch(id: string, everySeconds: number): Promise<void> {
    this.#access.require("credentials.verify", "token");
    await this.#access.db
      .update(apiTokens)
      .set({ lastUsedAt: sql`now()` })
      .where(
        and(
          eq(apiTokens.id, id),
          or(
            isNull(apiTokens.lastUsedAt),
            lt(apiTokens.lastUsedAt, sql`now() - make_interval(secs => ${everySeconds})`),
          ),
        ),
      );
  }
}
