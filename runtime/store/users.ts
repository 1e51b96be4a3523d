/** People: looked up while credentials are checked (`system:auth`), and a user's own sign-out. */
import { eq, sql } from "drizzle-orm";
import type { Access } from "./access.ts";
import type { UserActor } from "./actors.ts";
import { users } from "./schema.ts";

type UserRow = typeof users.$inferSelect;

const toActor = (row: UserRow): UserActor => ({
  kind: "user",
  userId: row.id,
  externalId: row.externalId,
  isAdmin: row.isAdmin,
});

export class UserStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /** The first authenticated request of a person creates their `users` row; later ones mark them seen. */
  async upsert(externalId: string, options: { isAdmin?: boolean } = {}): Promise<UserActor> {
    this.#access.require("credentials.verify", "user");
    const [row] = await this.#access.db
      .insert(users)
      .values({ externalId, isAdmin: options.isAdmin ?? false, lastSeenAt: new Date() })
      .onConflictDoUpdate({ target: users.externalId, set: { lastSeenAt: sql`now()` } })
      .returning();
    return toActor(row!);
  }

  async find(userId: string): Promise<UserActor | null> {
    this.#access.require("credentials.verify", "user");
    const [row] = await this.#access.db.select().from(users).where(eq(users.id, userId));
    return row ? toActor(row) : null;
  }

  /**
   * The user a web session names, if the session was issued after their last sign-out. Both are kept to
   * the millisecond, so a session issued earlier in the sign-out's second ends with it, and a sign-in right
   * after the sign-out works.
   */
  async forSession(userId: string, issuedAtMs: number): Promise<UserActor | null> {
    this.#access.require("credentials.verify", "user");
    const [row] = await this.#access.db.select().from(users).where(eq(users.id, userId));
    if (!row) return null;
    if (row.sessionsValidAfter && issuedAtMs < row.sessionsValidAfter.getTime()) return null;
    return toActor(row);
  }

  /** Ends every web session of the signed-in user issued before now. */
  async endWebSessions(): Promise<void> {
    this.#access.require("account.manage", "user");
    const { userId } = this.#access.user("user");
    await this.#access.db
      .update(users)
      .set({ sessionsValidAfter: sql`date_trunc('milliseconds', now())` })
      .where(eq(users.id, userId));
  }
}
