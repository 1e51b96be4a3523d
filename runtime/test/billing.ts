/** Helpers for the billing tests and bench: replicas' stores on their own pools, and instances with set intervals. */
import { randomUUID } from "node:crypto";
import { drizzle } from "drizzle-orm/node-postgres";
import pg from "pg";
import { SecretBox } from "../platform/secret-box.ts";
import type { Database } from "../store/client.ts";
import * as schema from "../store/schema.ts";
import { Store } from "../store/store.ts";
import { TEST_SECRET_KEYS } from "./keys.ts";

/** A store on its own pool, its connections named `appName` so a test can kill them like a crashed replica's. */
export function replicaStore(url: string, appName: string): { store: Store; database: Database } {
  const pool = new pg.Pool({ connectionString: url, max: 3, application_name: appName });
  pool.on("error", () => {});
  const database: Database = { url, pool, db: drizzle(pool, { schema }), close: () => pool.end() };
  return { store: new Store(database, { secretBox: SecretBox.fromSpec(TEST_SECRET_KEYS) }), database };
}

/** Opens an instance of `workspaceId` at `startedAt` (closed at `stoppedAt` when given); its id. */
export async function insertInstance(
  pool: pg.Pool,
  workspaceId: string,
  startedAt: Date,
  stoppedAt: Date | null = null,
): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO workspace_instances (workspace_id, agent_token_hash, started_at, stopped_at)
     VALUES ($1, $2, $3, $4) RETURNING id`,
    [workspaceId, randomUUID(), startedAt, stoppedAt],
  );
  return rows[0]!.id;
}

/** The minutes the README's rule owes for [start, stop): every minute the interval overlaps for any time. */
export function owedMinutes(start: Date, stop: Date): number[] {
  const s = start.getTime();
  const e = stop.getTime();
  if (e <= s) return [];
  const first = Math.floor(s / 60_000);
  const end = Math.ceil(e / 60_000);
  return Array.from({ length: end - first }, (_, i) => (first + i) * 60_000);
}
