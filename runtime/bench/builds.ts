/**
 * Build queue throughput: builds/s through the real queue (claim, advisory lock, log, finish) with the
 * scripted driver, for one worker slot, several slots in one process, and two replicas. The first row is
 * the baseline the ratios are against.
 */
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { ScriptedDriver } from "../test/scripted-driver.ts";
import { type BenchPostgres, benchControlPlane, fmt, table } from "./harness.ts";

const BUILDS = 150;

async function run(pgs: BenchPostgres, label: string, replicas: number, concurrency: number) {
  const url = await pgs.database(`builds_${replicas}x${concurrency}`);
  // The first control plane only enqueues; the workers start after, so all builds wait in the queue.
  const api = await benchControlPlane(url, new ScriptedDriver(), {}, { runBuilds: false });
  const owner = await upsertUser(api.deps.store, LOCAL_OWNER_EXTERNAL_ID, { isAdmin: true });
  const scope = api.deps.store.as(owner);
  for (let i = 0; i < BUILDS; i++) await api.deps.workspaces.create(scope, { name: `w${i}` });
  const started = performance.now();
  const workers = await Promise.all(
    Array.from({ length: replicas }, () =>
      benchControlPlane(
        url,
        new ScriptedDriver(),
        { BERTH_BUILD_CONCURRENCY: String(concurrency) },
        {
          worker: { pollMs: 50, heartbeatMs: 5_000 },
        },
      ),
    ),
  );
  for (;;) {
    const { rows } = await api.deps.database.pool.query(
      "SELECT count(*) FILTER (WHERE status = 'succeeded')::int AS done, count(*) FILTER (WHERE status = 'failed')::int AS failed FROM workspace_builds",
    );
    if (rows[0].failed > 0) throw new Error(`${rows[0].failed} builds failed`);
    if (rows[0].done === BUILDS) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(workers.map((w) => w.close()));
  await api.close();
  return { label, perSecond: BUILDS / seconds };
}

export async function benchBuildQueue(pgs: BenchPostgres): Promise<void> {
  const results = [
    await run(pgs, "1 replica x 1 slot (baseline)", 1, 1),
    await run(pgs, "1 replica x 4 slots", 1, 4),
    await run(pgs, "2 replicas x 2 slots", 2, 2),
  ];
  const base = results[0]!.perSecond;
  table(
    `Build queue throughput (${BUILDS} builds, scripted driver, real Postgres)`,
    ["workers", "builds/s", "vs baseline"],
    results.map((r) => [r.label, fmt(r.perSecond), `${fmt(r.perSecond / base, 2)}x`]),
  );
}
