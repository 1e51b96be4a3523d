import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../../platform/logger.ts";
import { createMetrics } from "../../platform/metrics.ts";
import { users } from "../../store/schema.ts";
import { insertInstance, replicaStore } from "../../test/billing.ts";
import { useDatabase } from "../../test/database.ts";
import { FakeStripe } from "../../test/fake-stripe.ts";
import { insertWorkspace } from "../../test/fixtures.ts";
import { MeterTicker } from "../../workers/metering.ts";
import { refreshFleetMetrics } from "../telemetry/fleet-metrics.ts";
import { createStripe } from "./stripe-client.ts";
import { MeterOutbox, meterIdentifier } from "./stripe-meter.ts";

const log = createLogger("silent");
const db = await useDatabase();
const fake = await FakeStripe.start();
afterAll(() => fake.close());

describe.each(["v2", "v1"] as const)("the compute-minute outbox to Stripe (%s)", (api) => {
  // A limit for a hang, not a speed target: 210 simulated minutes of real ticks and drains.
  it("loses nothing and sends nothing under two identifiers through an hour-long Stripe outage", {
    timeout: 240_000,
  }, async () => {
    fake.reset();
    await db.pool.query(
      "TRUNCATE meter_events, voice_usage, workspace_instances, billing_accounts, billing_meters CASCADE",
    );
    const [user] = await db.db
      .insert(users)
      .values({ externalId: `outbox-${api}`, email: "o@example.com" })
      .returning();
    let now = new Date("2026-05-01T00:00:00Z");
    for (let i = 0; i < 5; i++) {
      const ws = await insertWorkspace(db.db, user!.id);
      await insertInstance(db.pool, ws.id, new Date(now.getTime() + i * 7_000));
    }
    // Voice seconds, the outbox's second meter: one session every 10 minutes, due once it ended.
    await db.pool.query(
      `INSERT INTO voice_usage (user_id, seconds, started_at, not_before)
       SELECT $1, 30 + g, $2::timestamptz + g * interval '10 minutes', $2::timestamptz + g * interval '10 minutes'
       FROM generate_series(0, 11) g`,
      [user!.id, now],
    );
    const { store, database } = replicaStore(db.url, `outbox-${api}`);
    const metrics = createMetrics();
    afterAll(() => database.close());
    const ticker = new MeterTicker({ store, log, clock: () => now });
    const outbox = new MeterOutbox({
      store,
      stripe: createStripe("sk_test_fake", fake.endpoint),
      streamClient: (token) => createStripe(token, fake.endpoint),
      options: { api },
      metrics,
      eventName: "berth_compute_minute",
      log,
      clock: () => now,
    });
    const billing = store.as({ kind: "system", role: "billing", onBehalfOf: null }).billing;

    const backlogs: number[] = [];
    let drainedAtStep = -1;
    for (let step = 1; step <= 150; step++) {
      now = new Date(now.getTime() + 60_000);
      // Minutes 1-60: every call fails. Minutes 90-95: Stripe records the event but the answer is lost.
      fake.failing = step <= 60;
      fake.loseAnswers = step >= 90 && step <= 95;
      await ticker.tick();
      await outbox.drain().catch(() => null); // during the outage the meter cannot even be looked up
      const { unsent } = await billing.backlog();
      backlogs.push(unsent);
      if (step > 61 && unsent === 0 && drainedAtStep < 0) drainedAtStep = step;
    }
    // Stop metering, then let the last retries through.
    await db.pool.query("UPDATE workspace_instances SET stopped_at = $1 WHERE stopped_at IS NULL", [now]);
    for (let step = 0; step < 60; step++) {
      now = new Date(now.getTime() + 60_000);
      await ticker.tick();
      await outbox.drain();
    }

    const { rows } = await db.pool.query<{
      workspace_instance_id: string;
      minute_ts: Date;
      sent_at: Date | null;
    }>("SELECT workspace_instance_id, minute_ts, sent_at FROM meter_events");
    const { rows: voice } = await db.pool.query<{ id: string; seconds: number; sent_at: Date | null }>(
      "SELECT id, seconds, sent_at FROM voice_usage",
    );
    const expected = new Set([
      ...rows.map((r) => meterIdentifier(r.workspace_instance_id, r.minute_ts)),
      ...voice.map((v) => `voice:${v.id}`),
    ]);
    const accepted = new Set(fake.events.keys());
    const lost = [...expected].filter((id) => !accepted.has(id));
    const foreign = fake.attempts.filter((id) => !expected.has(id));
    expect({
      lost: lost.length,
      foreign: foreign.length,
      unsent: rows.filter((r) => !r.sent_at).length + voice.filter((v) => !v.sent_at).length,
    }).toEqual({
      lost: 0,
      foreign: 0,
      unsent: 0,
    });
    expect(accepted.size).toBe(rows.length + voice.length);
    // What operators see on /metrics agrees: every row counted sent once (v1 also tells the retries of a
    // lost answer apart; the v2 stream cannot), nothing left.
    const sentMetric = (await metrics.billingEventsSent.get()).values;
    expect(sentMetric.reduce((n, v) => n + v.value, 0)).toBe(accepted.size);
    await refreshFleetMetrics(store, metrics, { diskWarnPercent: 90, perWorkspace: false });
    expect((await metrics.billingUnsent.get()).values[0]?.value).toBe(0);
    // Voice seconds went to their own meter with their seconds as the value.
    for (const v of voice) {
      expect(fake.events.get(`voice:${v.id}`)).toMatchObject({
        eventName: "berth_voice_seconds",
        value: String(v.seconds),
      });
    }
    expect(rows.length).toBe(5 * 150);
    // The lost answers were retried and recognised as already delivered.
    expect(fake.duplicates).toBeGreaterThan(0);
    // Each event carries the user's one lazily created customer, and the meter was created once.
    expect(fake.customers).toHaveLength(1);
    expect(new Set([...fake.events.values()].map((e) => e.customer))).toEqual(
      new Set([fake.customers[0]!.id]),
    );
    expect(fake.meters.map((m) => m.event_name).sort()).toEqual([
      "berth_compute_minute",
      "berth_voice_seconds",
    ]);
    // The backlog of the outage (300 minutes) drained while new minutes kept coming.
    expect(Math.max(...backlogs)).toBeGreaterThanOrEqual(300);
    expect(drainedAtStep).toBeGreaterThan(61);
    expect(drainedAtStep).toBeLessThan(61 + 45);
  });
});
