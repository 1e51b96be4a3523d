/**
 * Issue 23, part A, end to end over HTTP: a heartbeat's load, memory and disk reach the workspace's
 * telemetry API and /metrics' fleet aggregates; a disk over BERTH_DISK_WARN_PERCENT notifies the owner
 * once however many heartbeats repeat it, and again only after it fell below the hysteresis and rose;
 * /metrics wants its bearer token; every replica reports the same meter outbox backlog; failed wakes and
 * failed creates are counted apart.
 */
import { describe, expect, it } from "vitest";
import type { HeartbeatRequestInput } from "../../box/protocol.ts";
import { upsertUser } from "../domain/identity/actor.ts";
import { sendHeartbeat } from "../test/agent.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { waitFor } from "../test/wait.ts";

const METRICS_TOKEN = "test-metrics-token-0123456789";
const GB = 1024 ** 3;

describe("box telemetry, disk alert and /metrics", async () => {
  const cp = await startTestControlPlane({
    BERTH_METRICS_TOKEN: METRICS_TOKEN,
    BERTH_METRICS_PER_WORKSPACE: "1",
    BERTH_DISK_WARN_PERCENT: "90",
    BERTH_MAX_WORKSPACES_PER_USER: "2",
  });
  const { pool } = cp.deps.database;
  let agentToken = "";
  cp.driver.afterStart = (spec) => {
    agentToken = spec.secrets.agentToken;
  };
  const stateOf = async (id: string) =>
    (await pool.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state as string;
  const createWorkspace = async (name: string) => {
    const res = await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: { name } });
    return (await json(res)).workspace.id as string;
  };

  const workspaceId = await createWorkspace("telemetry");
  await waitFor("the start build", async () => (await stateOf(workspaceId)) === "starting");

  const heartbeat = async (metrics: HeartbeatRequestInput["metrics"]) => {
    expect((await sendHeartbeat(cp, agentToken, metrics)).status).toBe(200);
  };
  const disk = (usedPercent: number) => ({
    loadAvg1: 0.42,
    memTotalBytes: 8 * GB,
    memAvailableBytes: 6 * GB,
    diskTotalBytes: 100 * GB,
    diskFreeBytes: ((100 - usedPercent) * GB) as number,
  });
  const scrape = async (token: string | null = METRICS_TOKEN) =>
    fetch(`${cp.url}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  const sample = (text: string, series: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
  const diskNotifications = async () =>
    (await json(await cp.api("/api/v1/notifications", { token: cp.localToken }))).notifications.filter(
      (n: { kind: string }) => n.kind === "disk_nearly_full",
    );

  it("stores a heartbeat's figures and shows them to the owner", async () => {
    const before = await json(
      await cp.api(`/api/v1/workspaces/${workspaceId}/telemetry`, { token: cp.localToken }),
    );
    expect(before).toMatchObject({ latest: null, history: [], diskWarnPercent: 90 });

    await heartbeat(disk(40));
    const body = await json(
      await cp.api(`/api/v1/workspaces/${workspaceId}/telemetry`, { token: cp.localToken }),
    );
    expect(body.latest).toMatchObject({
      loadAvg1: 0.42,
      memTotalBytes: 8 * GB,
      memUsedPercent: 25,
      diskTotalBytes: 100 * GB,
      diskUsedPercent: 40,
      diskWarning: false,
    });
    expect(body.history).toHaveLength(1);
    expect(body.history[0]).toMatchObject({ diskUsedPercent: 40 });
    // A second heartbeat in the same minute replaces that minute's point instead of adding one.
    await heartbeat(disk(41));
    const again = await json(
      await cp.api(`/api/v1/workspaces/${workspaceId}/telemetry`, { token: cp.localToken }),
    );
    expect(again.history.length).toBeLessThanOrEqual(2);
    expect(again.latest.diskUsedPercent).toBe(41);
  });

  it("someone else's workspace telemetry is a 404", async () => {
    const mallory = await upsertUser(cp.deps.store, "user_telemetry_mallory");
    const cookie = `berth_session=${await cp.deps.authenticator.sessionFor(mallory)}`;
    const res = await cp.api(`/api/v1/workspaces/${workspaceId}/telemetry`, { headers: { cookie } });
    expect(res.status).toBe(404);
    expect((await json(res)).error.code).toBe("not_found");
    expect((await cp.api(`/api/v1/workspaces/${workspaceId}/telemetry`)).status).toBe(401);
  });

  it("accepts a heartbeat whose figures do not fit the columns, storing what does fit", async () => {
    // The protocol allows any non-negative finite figure; the byte columns are bigint and the load a
    // float4, so these failed the whole heartbeat (500), and with it the box's desired state.
    await heartbeat({
      loadAvg1: 1e39,
      memTotalBytes: 8 * GB + 0.5,
      memAvailableBytes: 6 * GB,
      diskTotalBytes: 1e30,
      diskFreeBytes: 1e29,
    });
    const { latest } = await json(
      await cp.api(`/api/v1/workspaces/${workspaceId}/telemetry`, { token: cp.localToken }),
    );
    expect(latest).toMatchObject({
      loadAvg1: null,
      memTotalBytes: 8 * GB + 1,
      memAvailableBytes: 6 * GB,
      diskTotalBytes: null,
      diskFreeBytes: null,
      diskUsedPercent: null,
      diskWarning: false,
    });
    await heartbeat(disk(41)); // as the tests below expect
  });

  it("/metrics wants the bearer token, and then shows the fleet's telemetry", async () => {
    expect((await scrape(null)).status).toBe(401);
    expect((await scrape("wrong-token-wrong-token")).status).toBe(401);
    const res = await scrape();
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(sample(text, "box_telemetry_reporting_boxes")).toBe(1);
    expect(sample(text, "box_disk_used_ratio_max")).toBeCloseTo(0.41, 5);
    expect(sample(text, "box_disk_over_threshold_boxes")).toBe(0);
    expect(sample(text, 'box_disk_used_ratio_boxes{le="0.5"}')).toBe(1);
    expect(sample(text, "box_memory_used_ratio_max")).toBeCloseTo(0.25, 5);
    expect(sample(text, "box_load1_max")).toBeCloseTo(0.42, 5);
    // Opted in (BERTH_METRICS_PER_WORKSPACE=1): one series for this box.
    expect(sample(text, `box_disk_used_ratio_by_workspace{workspace_id="${workspaceId}"}`)).toBeCloseTo(
      0.41,
      5,
    );
    expect(sample(text, "backup_last_success_age_seconds_max")).toBeGreaterThan(0);
  });

  it("a full disk notifies once, re-arms below the hysteresis, and notifies again", async () => {
    for (let i = 0; i < 4; i++) await heartbeat(disk(95));
    expect(await diskNotifications()).toHaveLength(1);
    const [first] = await diskNotifications();
    expect(first).toMatchObject({ title: "Disk nearly full", workspaceId });
    expect(first.body).toContain("95% full");
    const body = await json(
      await cp.api(`/api/v1/workspaces/${workspaceId}/telemetry`, { token: cp.localToken }),
    );
    expect(body.latest.diskWarning).toBe(true);
    expect(sample(await (await scrape()).text(), "box_disk_over_threshold_boxes")).toBe(1);

    // Down to 88 %: under the threshold but within the hysteresis (85 %), so not re-armed; back up: silent.
    await heartbeat(disk(88));
    await heartbeat(disk(93));
    expect(await diskNotifications()).toHaveLength(1);

    // Below 85 % re-arms (the state is in the database, not in this process); the next crossing notifies.
    await heartbeat(disk(60));
    const armed = await pool.query("SELECT disk_warned_at FROM box_telemetry WHERE workspace_id = $1", [
      workspaceId,
    ]);
    expect(armed.rows[0].disk_warned_at).toBeNull();
    await heartbeat(disk(97));
    await heartbeat(disk(97));
    expect(await diskNotifications()).toHaveLength(2);
  });

  it("keeps the alert's state in the database: a fresh control plane neither repeats nor forgets it", async () => {
    // A second process on the same database, with nothing in memory (what a restart or another replica is).
    const fresh = await startTestControlPlane(
      { DATABASE_URL: cp.deps.database.url, BERTH_LOCAL_TOKEN: cp.localToken, BERTH_DISK_WARN_PERCENT: "90" },
      { runBuilds: false },
    );
    const beat = async (used: number) => {
      expect((await sendHeartbeat(fresh, agentToken, disk(used))).status).toBe(200);
    };
    const before = (await diskNotifications()).length;
    await beat(97); // still over since the last test: already warned
    expect(await diskNotifications()).toHaveLength(before);
    await beat(50);
    await beat(96);
    expect(await diskNotifications()).toHaveLength(before + 1);
  });

  it("every replica reports the same meter outbox backlog, read from the database at scrape", async () => {
    // Seven undelivered minutes, one delivered; no replica drains them (schedules are off in tests), so
    // a gauge set by the draining replica would still read 0 everywhere.
    const { rows } = await pool.query("SELECT id FROM workspace_instances WHERE workspace_id = $1 LIMIT 1", [
      workspaceId,
    ]);
    await pool.query(
      `INSERT INTO meter_events (workspace_instance_id, minute_ts, sent_at)
       SELECT $1, date_trunc('minute', now()) - g * interval '1 minute', CASE WHEN g = 0 THEN now() END
       FROM generate_series(0, 7) g`,
      [rows[0].id],
    );
    const other = await startTestControlPlane(
      { DATABASE_URL: cp.deps.database.url, BERTH_LOCAL_TOKEN: cp.localToken },
      { runBuilds: false },
    );
    const text = await (await scrape()).text();
    const otherText = await (await fetch(`${other.url}/metrics`)).text();
    expect(sample(text, "billing_meter_events_unsent")).toBe(7);
    expect(sample(otherText, "billing_meter_events_unsent")).toBe(7);
    await pool.query("UPDATE meter_events SET sent_at = now() WHERE sent_at IS NULL");
    expect(sample(await (await fetch(`${other.url}/metrics`)).text(), "billing_meter_events_unsent")).toBe(0);
    await pool.query("DELETE FROM meter_events");
  });

  it("counts a failed create and a failed wake apart", async () => {
    const failures = async () =>
      Object.fromEntries(
        (await cp.deps.metrics.transitionFailures.get()).values.map((v) => [
          String(v.labels.operation),
          v.value,
        ]),
      );
    // A create whose start fails: operation "create".
    cp.driver.script("start", { kind: "fail", message: "no capacity", retryable: false });
    const doomed = await createWorkspace("doomed");
    await waitFor("the failed create", async () => (await stateOf(doomed)) === "failed");
    await waitFor("the create failure counted", async () => (await failures()).create === 1);

    // The first workspace started fine; once ready, hibernate it, then make its wake fail.
    await waitFor("ready", async () => (await stateOf(workspaceId)) === "ready");
    await cp.api(`/api/v1/workspaces/${workspaceId}/hibernate`, { method: "POST", token: cp.localToken });
    await waitFor("hibernated", async () => (await stateOf(workspaceId)) === "hibernated");
    cp.driver.script("start", { kind: "fail", message: "server type unavailable", retryable: false });
    await cp.api(`/api/v1/workspaces/${workspaceId}/wake`, { method: "POST", token: cp.localToken });
    await waitFor("the failed wake", async () => (await stateOf(workspaceId)) === "failed");
    await waitFor("the wake failure counted", async () => (await failures()).wake === 1);
    expect((await failures()).create).toBe(1);
    const text = await (await scrape()).text();
    expect(sample(text, 'workspace_transition_failures_total{transition="start",operation="wake"}')).toBe(1);
    expect(sample(text, 'workspace_transition_failures_total{transition="start",operation="create"}')).toBe(
      1,
    );
  });
});
