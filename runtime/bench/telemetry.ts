/**
 * What box telemetry costs (issue 23): a /metrics scrape, which now aggregates the fleet's latest samples
 * from the database, at 100, 1,000 and 10,000 reporting boxes, against the baseline of the same scrape's
 * in-memory part alone (prom-client rendering the registry); and a heartbeat's telemetry write (latest
 * row, minute point, prune, alert check, in one transaction) against the heartbeat's existing write (the
 * instance row's lifecycle update). Medians.
 */
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { refreshFleetMetrics } from "../domain/telemetry/fleet-metrics.ts";
import { recordTelemetry } from "../domain/telemetry/record.ts";
import { DISK_RATIO_BOUNDS } from "../platform/metrics.ts";
import { agentActor, SYSTEM } from "../store/actors.ts";
import { ScriptedDriver } from "../test/scripted-driver.ts";
import { type BenchPostgres, benchControlPlane, fmt, median, table } from "./harness.ts";

async function time(runs: number, fn: () => Promise<unknown>): Promise<number> {
  await fn(); // warm
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    ms.push(performance.now() - t);
  }
  return median(ms);
}

async function seed(pool: import("pg").Pool, ownerId: string, n: number) {
  await pool.query(
    `WITH w AS (
       INSERT INTO workspaces (owner_id, name, state, driver, location, server_type, volume_size_gb)
       SELECT $1, 'w' || g, 'ready', 'scripted', 'fsn1', 'cx22', 20 FROM generate_series(1, $2) g RETURNING id),
     i AS (
       INSERT INTO workspace_instances (workspace_id, agent_token_hash)
       SELECT id, md5(random()::text) FROM w RETURNING id, workspace_id)
     INSERT INTO box_telemetry (workspace_id, instance_id, sampled_at, load_avg1, mem_total_bytes,
       mem_available_bytes, disk_total_bytes, disk_free_bytes)
     SELECT workspace_id, id, now(), random() * 4, 4e9, random() * 4e9, 4e10, random() * 4e10 FROM i`,
    [ownerId, n],
  );
}

export async function benchTelemetry(pgs: BenchPostgres): Promise<void> {
  const url = await pgs.database("telemetry");
  const cp = await benchControlPlane(url, new ScriptedDriver(), {}, { runBuilds: false });
  const { metrics, store } = cp.deps;
  const { pool } = cp.deps.database;
  const owner = await upsertUser(store, LOCAL_OWNER_EXTERNAL_ID, { isAdmin: true });
  const options = { diskWarnPercent: 90, perWorkspace: false };

  const scrapes: Array<Array<string | number>> = [];
  let seeded = 0;
  for (const n of [100, 1_000, 10_000]) {
    await seed(pool, owner.userId, n - seeded);
    seeded = n;
    const render = await time(15, () => metrics.registry.metrics());
    const full = await time(15, async () => {
      await refreshFleetMetrics(store, metrics, options);
      await metrics.registry.metrics();
    });
    const scope = store.as(SYSTEM.metrics);
    const summary = await time(15, () => scope.telemetry.fleetSummary(new Date(0), 0.9, DISK_RATIO_BOUNDS));
    const backups = await time(15, () => scope.backups.oldestLastSuccessAgeSeconds());
    scrapes.push([
      n,
      fmt(render, 2),
      fmt(full, 2),
      `${fmt(full / render)}×`,
      fmt(summary, 2),
      fmt(backups, 2),
    ]);
  }
  table(
    "/metrics scrape with the fleet's telemetry aggregated from Postgres (median of 15)",
    [
      "boxes",
      "registry only ms (baseline)",
      "with fleet refresh ms",
      "ratio",
      "of which telemetry",
      "backup age",
    ],
    scrapes,
  );

  const { rows } = await pool.query<{ id: string; workspace_id: string }>(
    "SELECT id, workspace_id FROM workspace_instances LIMIT 1",
  );
  const agent = store.as(agentActor({ id: rows[0]!.id, workspaceId: rows[0]!.workspace_id }));
  const m = {
    loadAvg1: 0.5,
    memTotalBytes: 4e9,
    memAvailableBytes: 3e9,
    diskTotalBytes: 4e10,
    diskFreeBytes: 2e10,
  };
  const lifecycle = await time(200, () =>
    agent.agents.recordHeartbeat({ lifecycle: "ready", agentVersion: "bench", lastError: null }),
  );
  const telemetry = await time(200, () => recordTelemetry(agent, m, { diskWarnPercent: 90 }));
  table(
    "a heartbeat's writes (median of 200, one box, 10,000 in the table)",
    ["write", "ms", "ratio"],
    [
      ["instance lifecycle update (baseline)", fmt(lifecycle, 2), "1.0×"],
      ["telemetry: latest, minute point, prune, alert", fmt(telemetry, 2), `${fmt(telemetry / lifecycle)}×`],
    ],
  );
  await cp.close();
}
