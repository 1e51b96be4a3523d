/**
 * Reconciler cost per tick at 100, 1,000 and 10,000 workspaces: database queries, driver listings and
 * wall time. The baseline is what a per-workspace design would spend: one driver `observe` per workspace.
 */
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { createLogger } from "../platform/logger.ts";
import { createMetrics } from "../platform/metrics.ts";
import { ScriptedDriver } from "../test/scripted-driver.ts";
import { Reconciler } from "../workers/reconciler.ts";
import { type BenchPostgres, benchControlPlane, fmt, table } from "./harness.ts";

async function seed(pool: import("pg").Pool, ownerId: string, n: number, driver: ScriptedDriver) {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO workspaces (owner_id, name, state, driver, location, server_type, volume_size_gb)
     SELECT $1, 'w' || g, 'ready', 'scripted', 'fsn1', 'cx22', 20 FROM generate_series(1, $2) g RETURNING id`,
    [ownerId, n],
  );
  await pool.query(
    `INSERT INTO workspace_instances (workspace_id, agent_token_hash, public_ip, ready_at)
     SELECT id, md5(id::text), '203.0.113.1', now() FROM unnest($1::uuid[]) AS id`,
    [rows.map((r) => r.id)],
  );
  for (const { id } of rows) {
    driver.world.set(id, {
      workspaceId: id,
      running: true,
      serverId: `srv-${id}`,
      publicIp: "203.0.113.1",
      resourceIds: [],
    });
  }
}

export async function benchReconciler(pgs: BenchPostgres): Promise<void> {
  const url = await pgs.database("reconciler");
  const driver = new ScriptedDriver();
  const cp = await benchControlPlane(url, driver, {}, { runBuilds: false });
  const owner = await upsertUser(cp.deps.store, LOCAL_OWNER_EXTERNAL_ID, { isAdmin: true });
  const reconciler = new Reconciler({
    store: cp.deps.store,
    driver,
    metrics: createMetrics(),
    log: createLogger("silent"),
  });
  const rows: Array<Array<string | number>> = [];
  let seeded = 0;
  for (const n of [100, 1_000, 10_000]) {
    await seed(cp.deps.database.pool, owner.userId, n - seeded, driver);
    seeded = n;
    await reconciler.tick(); // warm
    const ticks = 5;
    let ms = 0;
    let queries = 0;
    const before = driver.observeAllCalls;
    for (let i = 0; i < ticks; i++) {
      const r = await reconciler.tick();
      ms += r.ms;
      queries += r.queries;
    }
    const listings = (driver.observeAllCalls - before) / ticks;
    rows.push([n, fmt(queries / ticks, 0), fmt(listings, 0), fmt(ms / ticks), n, `${fmt(n / listings, 0)}x`]);
  }
  await cp.close();
  table(
    "Reconciler cost per tick (mean of 5 ticks)",
    ["workspaces", "DB queries", "driver listings", "ms/tick", "baseline driver ops", "fewer driver ops"],
    rows,
  );
}
