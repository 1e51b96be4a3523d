import { eq, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { users } from "../db/schema.ts";

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
