import { eq, sql } from "drizzle-orm";
import type { Db } from "../../store/client.ts";
import { users } from "../../store/schema.ts";

/** Who is making a request, once authenticated. Everything downstream authorizes against this. */
export interface Actor {
  userId: string;
  externalId: string;
  isAdmin: boolean;
}

export const LOCAL_OWNER_EXTERNAL_ID = "local:owner";

/** The first authenticated request of a person creates their `users` row. */
export async function upsertUser(
  db: Db,
  externalId: string,
  options: { isAdmin?: boolean } = {},
): Promise<Actor> {
  const [row] = await db
    .insert(users)
    .values({ externalId, isAdmin: options.isAdmin ?? false, lastSeenAt: new Date() })
    .onConflictDoUpdate({ target: users.externalId, set: { lastSeenAt: sql`now()` } })
    .returning();
  return { userId: row!.id, externalId: row!.externalId, isAdmin: row!.isAdmin };
}

export async function findUser(db: Db, userId: string): Promise<Actor | null> {
  const [row] = await db.select().from(users).where(eq(users.id, userId));
  return row ? { userId: row.id, externalId: row.externalId, isAdmin: row.isAdmin } : null;
}

/**
 * The user a web session names, if the session was issued after their last sign-out. Sign-out stores a
 * whole second (tokens carry whole seconds), so a session issued in the same second as the sign-out still
 * counts, and one from an earlier second does not.
 */
export async function findUserForSession(db: Db, userId: string, issuedAtMs: number): Promise<Actor | null> {
  const [row] = await db.select().from(users).where(eq(users.id, userId));
  if (!row) return null;
  if (row.sessionsValidAfter && issuedAtMs < row.sessionsValidAfter.getTime()) return null;
  return { userId: row.id, externalId: row.externalId, isAdmin: row.isAdmin };
}

/** Ends every web session of this user issued before now (sign-out). */
export async function endWebSessions(db: Db, userId: string): Promise<void> {
  await db
    .update(users)
    .set({ sessionsValidAfter: sql`date_trunc('second', now())` })
    .where(eq(users.id, userId));
}
