import { drizzle, type NodePgDatabase, type NodePgQueryResultHKT } from "drizzle-orm/node-postgres";
import type { PgDatabase } from "drizzle-orm/pg-core";
import pg from "pg";
import * as schema from "./schema.ts";

export type Db = NodePgDatabase<typeof schema>;

export interface Database {
  url: string;
  pool: pg.Pool;
  db: Db;
  close(): Promise<void>;
}

export function connectDatabase(url: string, options: { max?: number } = {}): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    // Fail fast instead of queueing forever when Postgres is down, so /readyz can answer 503.
    connectionTimeoutMillis: 5_000,
    application_name: "berth",
  });
  // An idle client losing its server must not crash the process; the next query reports the error.
  pool.on("error", () => {});
  return { url, pool, db: drizzle(pool, { schema }), close: () => pool.end() };
}

/**
 * What store queries run on: the pool's drizzle instance or a transaction of it (both are a PgDatabase), so
 * one area of the store serves both inside and outside a transaction.
 */
export type Executor = PgDatabase<NodePgQueryResultHKT, typeof schema>;
