/**
 * Billing: one metering tick at 100, 1,000 and 10,000 running instances (statements and time; the baseline
 * is what a per-workspace design spends, one INSERT per running instance, measured here too), and the
 * outbox's throughput against the in-process fake Stripe, with no added latency and with a 100 ms round
 * trip: v1 `billing.meterEvents.create` one at a time (the baseline), v1 with 16 and 64 in flight, and the
 * v2 meter event stream in batches of 100 (the default), each against the accrual rate of 10,000 running
 * workspaces (one event per workspace per minute).
 */
import { createStripe } from "../domain/billing/stripe-client.ts";
import { MeterOutbox } from "../domain/billing/stripe-meter.ts";
import { createLogger } from "../platform/logger.ts";
import { SecretBox } from "../platform/secret-box.ts";
import { connectDatabase, type Database } from "../store/client.ts";
import { runMigrations } from "../store/migrate.ts";
import { Store } from "../store/store.ts";
import { FakeStripe } from "../test/fake-stripe.ts";
import { TEST_SECRET_KEYS } from "../test/keys.ts";
import { MeterTicker } from "../workers/metering.ts";
import { type BenchPostgres, fmt, table } from "./harness.ts";

const log = createLogger("silent");
const T0 = new Date("2026-06-01T00:00:00Z");

async function seed(database: Database, n: number): Promise<void> {
  const { rows } = await database.pool.query<{ id: string }>(
    "INSERT INTO users (external_id, email) VALUES ('bench-' || gen_random_uuid(), 'bench@example.com') RETURNING id",
  );
  await database.pool.query(
    `WITH ws AS (
       INSERT INTO workspaces (owner_id, name, state, driver, location, server_type, volume_size_gb)
       SELECT $1, 'w' || g, 'ready', 'scripted', 'fsn1', 'cx22', 20 FROM generate_series(1, $2) g RETURNING id
     )
     INSERT INTO workspace_instances (workspace_id, agent_token_hash, started_at)
     SELECT id, md5(id::text), $3 FROM ws`,
    [rows[0]!.id, n, T0],
  );
}

async function benchTick(database: Database, store: Store): Promise<void> {
  let now = new Date(T0.getTime() + 30_000);
  const ticker = new MeterTicker({ store, log, clock: () => now });
  const rows: Array<Array<string | number>> = [];
  let seeded = 0;
  for (const n of [100, 1_000, 10_000]) {
    await seed(database, n - seeded);
    seeded = n;
    now = new Date(now.getTime() + 60_000);
    await ticker.tick(); // catch the new instances up, warm the plan
    const ticks = 5;
    let ms = 0;
    let passes = 0;
    let inserted = 0;
    for (let i = 0; i < ticks; i++) {
      now = new Date(now.getTime() + 60_000);
      const r = await ticker.tick();
      ms += r.ms;
      passes += r.passes;
      inserted += r.inserted;
    }
    // The per-workspace design: one INSERT per running instance per tick (a minute no tick writes).
    const { rows: open } = await database.pool.query<{ id: string }>(
      "SELECT id FROM workspace_instances WHERE stopped_at IS NULL",
    );
    const baseMinute = new Date(T0.getTime() - (n + 1) * 60_000);
    const started = performance.now();
    for (const { id } of open) {
      await database.pool.query(
        "INSERT INTO meter_events (workspace_instance_id, minute_ts) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [id, baseMinute],
      );
    }
    const baselineMs = performance.now() - started;
    // Each pass is BEGIN, the tick lock, the one metering statement, COMMIT.
    rows.push([
      n,
      fmt(inserted / ticks, 0),
      fmt(passes / ticks, 0),
      fmt((4 * passes) / ticks, 0),
      fmt(ms / ticks),
      open.length,
      fmt(baselineMs),
      `${fmt(baselineMs / (ms / ticks))}x`,
    ]);
  }
  table(
    "Metering tick (mean of 5 ticks; baseline: one INSERT per running instance)",
    [
      "running",
      "minutes/tick",
      "statements",
      "round trips",
      "ms/tick",
      "baseline queries",
      "baseline ms",
      "faster",
    ],
    rows,
  );
}

/** Unsent minutes for the outbox to drain: `n` running instances metered for `minutes` minutes. */
async function backlog(database: Database, store: Store, n: number, minutes: number): Promise<void> {
  await database.pool.query(
    "TRUNCATE meter_events, workspace_instances, workspaces, billing_accounts CASCADE",
  );
  await seed(database, n);
  const now = new Date(T0.getTime() + minutes * 60_000);
  await new MeterTicker({ store, log, clock: () => now }).tick();
}

interface SenderRow {
  label: string;
  latencyMs: number;
  send: (fake: FakeStripe) => Promise<{ sent: number; ms: number }>;
}

/** The outbox itself, with `api` and `concurrency` (calls in flight; a v2 call carries 100 minutes). */
const outbox =
  (store: Store, api: "v1" | "v2", concurrency: number) =>
  async (fake: FakeStripe): Promise<{ sent: number; ms: number }> => {
    const sender = new MeterOutbox({
      store,
      stripe: createStripe("sk_test_bench", fake.endpoint),
      streamClient: (token) => createStripe(token, fake.endpoint),
      eventName: "berth_compute_minute",
      log,
      clock: drainClock,
      options: { api, concurrency, maxBatches: 1_000 },
    });
    const started = performance.now();
    const r = await sender.drain();
    return { sent: r.sent, ms: performance.now() - started };
  };

const drainClock = () => new Date(T0.getTime() + 2 * 3600_000);

async function benchOutbox(database: Database, store: Store): Promise<void> {
  const fake = await FakeStripe.start();
  const accrual = 10_000 / 60;
  const senders: SenderRow[] = [
    { label: "v1, 1 in flight (baseline)", latencyMs: 0, send: outbox(store, "v1", 1) },
    { label: "v1, 16 in flight", latencyMs: 0, send: outbox(store, "v1", 16) },
    { label: "v2 stream, 100 per call, 5 in flight (default)", latencyMs: 0, send: outbox(store, "v2", 16) },
    { label: "v1, 1 in flight (baseline)", latencyMs: 100, send: outbox(store, "v1", 1) },
    { label: "v1, 16 in flight", latencyMs: 100, send: outbox(store, "v1", 16) },
    { label: "v1, 64 in flight", latencyMs: 100, send: outbox(store, "v1", 64) },
    {
      label: "v2 stream, 100 per call, 5 in flight (default)",
      latencyMs: 100,
      send: outbox(store, "v2", 16),
    },
  ];
  const rows: Array<Array<string | number>> = [];
  const baselines = new Map<number, number>();
  try {
    for (const s of senders) {
      // Enough minutes for a second or more of sending at the expected rate, not more.
      const events = s.latencyMs === 0 ? 4_000 : s.label.startsWith("v1, 1 ") ? 200 : 2_000;
      await backlog(database, store, 40, events / 40);
      fake.latencyMs = s.latencyMs;
      const { sent, ms } = await s.send(fake);
      const perSecond = sent / (ms / 1000);
      if (!baselines.has(s.latencyMs)) baselines.set(s.latencyMs, perSecond);
      rows.push([
        s.latencyMs,
        s.label,
        sent,
        fmt(perSecond, 0),
        `${fmt(perSecond / baselines.get(s.latencyMs)!, 2)}x`,
        `${fmt(perSecond / accrual, 1)}x`,
      ]);
    }
  } finally {
    await fake.close();
  }
  table(
    `Outbox throughput against the fake Stripe (accrual at 10,000 running workspaces = ${fmt(accrual, 0)} events/s)`,
    ["added latency ms", "sender", "events", "events/s", "vs baseline", "vs accrual"],
    rows,
  );
}

export async function benchBilling(pgs: BenchPostgres): Promise<void> {
  const database = connectDatabase(await pgs.database("billing"), { max: 4 });
  try {
    await runMigrations(database);
    const store = new Store(database, { secretBox: SecretBox.fromSpec(TEST_SECRET_KEYS) });
    await benchTick(database, store);
    await benchOutbox(database, store);
  } finally {
    await database.close();
  }
}
