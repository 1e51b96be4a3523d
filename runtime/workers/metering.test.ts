import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../platform/logger.ts";
import { users } from "../store/schema.ts";
import { insertInstance, owedMinutes, replicaStore } from "../test/billing.ts";
import { useDatabase } from "../test/database.ts";
import { insertWorkspace } from "../test/fixtures.ts";
import { prng } from "../test/prng.ts";
import { MeterTicker } from "./metering.ts";

const log = createLogger("silent");
const db = await useDatabase();

async function metered(): Promise<Map<string, number[]>> {
  const { rows } = await db.pool.query<{ workspace_instance_id: string; minute_ts: Date }>(
    "SELECT workspace_instance_id, minute_ts FROM meter_events ORDER BY minute_ts",
  );
  const out = new Map<string, number[]>();
  for (const r of rows) {
    const list = out.get(r.workspace_instance_id) ?? [];
    list.push(r.minute_ts.getTime());
    out.set(r.workspace_instance_id, list);
  }
  return out;
}

describe("compute-minute metering", () => {
  it("meters partial first and last minutes whole, zero-length intervals not at all, and only ended minutes", async () => {
    const [user] = await db.db.insert(users).values({ externalId: "meter-rule" }).returning();
    const ws = await insertWorkspace(db.db, user!.id);
    const t = (hms: string) => new Date(`2026-03-01T${hms}Z`);
    const a = await insertInstance(db.pool, ws.id, t("10:00:30"), t("10:03:00"));
    const b = await insertInstance(db.pool, ws.id, t("10:05:10"), t("10:05:10"));
    const c = await insertInstance(db.pool, ws.id, t("10:06:59"), t("10:07:01"));
    const { store, database } = replicaStore(db.url, "meter-rule");
    let now = t("10:06:30");
    const ticker = new MeterTicker({ store, log, clock: () => now });
    try {
      await ticker.tick();
      now = t("10:09:00");
      await ticker.tick();
      const got = await metered();
      const iso = (id: string) => (got.get(id) ?? []).map((ms) => new Date(ms).toISOString().slice(11, 16));
      expect(iso(a)).toEqual(["10:00", "10:01", "10:02"]);
      expect(iso(b)).toEqual([]);
      expect(iso(c)).toEqual(["10:06", "10:07"]);
      // An open instance: only minutes that have ended.
      const d = await insertInstance(db.pool, ws.id, t("10:10:00"));
      now = t("10:12:59");
      await ticker.tick();
      expect(iso(d)).toEqual([]);
      expect((await metered()).get(d)?.map((ms) => new Date(ms).toISOString().slice(11, 16))).toEqual([
        "10:10",
        "10:11",
      ]);
      await db.pool.query("UPDATE workspace_instances SET stopped_at = $1 WHERE id = $2", [now, d]);
      now = t("10:20:00");
      await ticker.tick();
      expect((await metered()).get(d)).toHaveLength(3);
    } finally {
      await database.close();
      await db.pool.query("DELETE FROM meter_events");
      await db.pool.query("DELETE FROM workspace_instances");
    }
  });

  // A limit for a hang, not a speed target: 400 steps of real ticks take tens of seconds on a busy machine.
  it("soak: three replicas restarted at random with the clock stepped forward meter every running minute exactly once", {
    timeout: 240_000,
  }, async () => {
    const seed = Number(process.env.BERTH_SOAK_SEED ?? 18);
    const rand = prng(seed);
    const [user] = await db.db.insert(users).values({ externalId: "meter-soak" }).returning();
    const workspaces = await Promise.all(Array.from({ length: 8 }, () => insertWorkspace(db.db, user!.id)));
    let now = new Date("2026-04-01T00:00:07.250Z");
    // Small passes, so catching up after a jump takes several of them.
    const replicas = [0, 1, 2].map((i) => ({ i, gen: 0, ...replicaStore(db.url, `soak-r${i}-0`) }));
    const tickers = () =>
      replicas.map((r) => new MeterTicker({ store: r.store, log, clock: () => now, maxMinutesPerPass: 45 }));
    let ticking = tickers();
    afterAll(() => Promise.all(replicas.map((r) => r.database.close().catch(() => {}))));

    const open = new Map<string, { id: string; start: Date }>();
    const intervals: Array<{ id: string; start: Date; stop: Date }> = [];
    let crashes = 0;
    let ran = 0;

    for (let step = 0; step < 400; step++) {
      // The clock moves on: usually seconds, sometimes hours (every replica was down meanwhile).
      const jump = rand() < 0.03 ? 3600_000 * (1 + rand() * 3) : rand() * 150_000;
      now = new Date(now.getTime() + Math.round(jump));
      for (const w of workspaces) {
        const o = open.get(w.id);
        if (o && rand() < 0.15) {
          await db.pool.query("UPDATE workspace_instances SET stopped_at = $1 WHERE id = $2", [now, o.id]);
          intervals.push({ ...o, stop: now });
          open.delete(w.id);
        } else if (!o && rand() < 0.2) {
          const id = await insertInstance(db.pool, w.id, now);
          open.set(w.id, { id, start: now });
        }
      }
      // One to three replicas tick at once.
      const who = replicas.filter(() => rand() < 0.5);
      const results = await Promise.allSettled(who.map((r) => ticking[r.i]!.tick()));
      ran += results.filter((x) => x.status === "fulfilled" && x.value.ran).length;
      if (rand() < 0.1) {
        // A replica crashes mid-tick: its connections are killed while its tick runs, then it restarts.
        const r = replicas[Math.floor(rand() * 3)]!;
        const inFlight = ticking[r.i]!.tick().catch(() => null);
        await db.pool.query(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
          [`soak-r${r.i}-${r.gen}`],
        );
        await inFlight;
        await r.database.close().catch(() => {});
        r.gen++;
        Object.assign(r, replicaStore(db.url, `soak-r${r.i}-${r.gen}`));
        ticking = tickers();
        crashes++;
      }
    }
    for (const [, o] of open) {
      await db.pool.query("UPDATE workspace_instances SET stopped_at = $1 WHERE id = $2", [now, o.id]);
      intervals.push({ ...o, stop: now });
    }
    now = new Date(now.getTime() + 120_000);
    for (let i = 0; i < 50; i++) {
      const report = await ticking[0]!.tick();
      if (report.ran && report.inserted === 0) break;
    }

    const got = await metered();
    let expected = 0;
    let gaps = 0;
    let extra = 0;
    let duplicates = 0;
    for (const iv of intervals) {
      const want = owedMinutes(iv.start, iv.stop);
      const have = got.get(iv.id) ?? [];
      expected += want.length;
      duplicates += have.length - new Set(have).size;
      const haveSet = new Set(have);
      const wantSet = new Set(want);
      gaps += want.filter((m) => !haveSet.has(m)).length;
      extra += [...haveSet].filter((m) => !wantSet.has(m)).length;
    }
    const total = [...got.values()].reduce((n, l) => n + l.length, 0);
    expect({ duplicates, gaps, extra, total }).toEqual({ duplicates: 0, gaps: 0, extra: 0, total: expected });
    // The run exercised what it claims to: many minutes, several crashes, ticks on every replica.
    expect(expected).toBeGreaterThan(1000);
    expect(crashes).toBeGreaterThan(5);
    expect(ran).toBeGreaterThan(100);
  });
});
