/**
 * Idle autostop cost per tick at 100, 1,000 and 10,000 workspaces (each with a session, a third of them with
 * a working Claude): statements and wall time of the real tick, against a baseline measured in the same
 * run, the per-workspace design it replaces (read each workspace's activity, then its sessions' states).
 */
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { createLogger } from "../platform/logger.ts";
import { connectDatabase } from "../store/client.ts";
import { Store } from "../store/store.ts";
import { ScriptedDriver } from "../test/scripted-driver.ts";
import { Autostop } from "../workers/autostop.ts";
import { type BenchPostgres, benchControlPlane, fmt, table } from "./harness.ts";

async function seed(pool: import("pg").Pool, ownerId: string, n: number) {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO workspaces (owner_id, name, state, driver, location, server_type, volume_size_gb, last_activity_at)
     SELECT $1, 'w' || g, 'ready', 'scripted', 'fsn1', 'cx22', 20, now() FROM generate_series(1, $2) g RETURNING id`,
    [ownerId, n],
  );
  await pool.query(
    `INSERT INTO sessions (workspace_id, name, claude_state, claude_state_since)
     SELECT id, 'main', CASE WHEN random() < 0.33 THEN 'working' ELSE 'idle' END, now()
       FROM unnest($1::uuid[]) AS id`,
    [rows.map((r) => r.id)],
  );
}

export async function benchAutostop(pgs: BenchPostgres): Promise<void> {
  const url = await pgs.database("autostop");
  const cp = await benchControlPlane(url, new ScriptedDriver(), {}, { runBuilds: false });
  const owner = await upsertUser(cp.deps.store, LOCAL_OWNER_EXTERNAL_ID, { isAdmin: true });
  const database = connectDatabase(url, { max: 2 });
  let queries = 0;
  const query = database.pool.query.bind(database.pool);
  database.pool.query = ((...args: Parameters<typeof query>) => {
    queries++;
    return query(...args);
  }) as typeof database.pool.query;
  const autostop = new Autostop({
    store: new Store(database, { secretBox: cp.deps.secretBox }),
    workspaces: cp.deps.workspaces,
    log: createLogger("silent"),
  });
  const { pool } = cp.deps.database;
  const rows: Array<Array<string | number>> = [];
  let seeded = 0;
  for (const n of [100, 1_000, 10_000]) {
    await seed(pool, owner.userId, n - seeded);
    seeded = n;
    await autostop.tick(); // warm
    const ticks = 5;
    queries = 0;
    let started = performance.now();
    for (let i = 0; i < ticks; i++) await autostop.tick();
    const ms = (performance.now() - started) / ticks;
    const perTick = queries / ticks;
    // Baseline: one round trip per workspace for its activity and one for its sessions.
    started = performance.now();
    const { rows: ids } = await pool.query<{ id: string }>("SELECT id FROM workspaces WHERE state = 'ready'");
    for (const { id } of ids) {
      await pool.query(
        "SELECT last_activity_at, state_changed_at, idle_timeout_minutes FROM workspaces WHERE id = $1",
        [id],
      );
      await pool.query("SELECT claude_state FROM sessions WHERE workspace_id = $1 AND closed_at IS NULL", [
        id,
      ]);
    }
    const baselineMs = performance.now() - started;
    rows.push([n, fmt(perTick, 0), fmt(ms), 1 + 2 * ids.length, fmt(baselineMs), `${fmt(baselineMs / ms)}x`]);
  }
  await database.close();
  await cp.close();
  table(
    "Idle autostop cost per tick (mean of 5 ticks) vs. a per-workspace loop",
    ["workspaces", "DB queries", "ms/tick", "baseline queries", "baseline ms", "faster"],
    rows,
  );
}
