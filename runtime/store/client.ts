import { drizzle, type NodePgDatabase } from "drizzle-orm/node-postgres";
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
