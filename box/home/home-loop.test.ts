import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AGENT_API_PATHS, type AgentEvent, type AgentEventDraft } from "../protocol.ts";
import { parseTraceparent, type TraceContext } from "../telemetry/trace.ts";
import { type FakeControlPlane, newFakeState, startFakeControlPlane } from "../testing/fake-control-plane.ts";
import { waitUntil } from "../testing/wait.ts";
import { ControlPlaneClient } from "./client.ts";
import { DesiredStateApplier, type SessionManager } from "./desired-state.ts";
import { type HeartbeatStatus, HomeLoop } from "./home-loop.ts";
import { Outbox } from "./outbox.ts";

const log = pino({ level: "silent" });
const TOKEN = "agent-token-for-tests-0123456789";
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const waitFor = (cond: () => boolean, what: string) => waitUntil(cond, what, undefined, 10);

class MemorySessions implements SessionManager {
  names = new Set<string>();
  typed: string[] = [];
  async ensure(name: string) {
    this.names.add(name);
  }
  async list() {
    return [...this.names].map((name) => ({ name }));
  }
  async kill(name: string) {
    this.names.delete(name);
  }
  async sendKeys(name: string, text: string, o: { pane?: string; enter?: boolean }) {
    if (!this.names.has(name)) throw new Error(`no session ${name}`);
    this.typed.push(`${name}/${o.pane}:${text}${o.enter ? "⏎" : ""}`);
  }
}

function makeAgent(dir: string, url: string, token = TOKEN, bootTrace: TraceContext | null = null) {
  const outbox = Outbox.open(join(dir, "outbox.jsonl"), { sync: false });
  const sessions = new MemorySessions();
  const applier = new DesiredStateApplier({ sessions, statePath: join(dir, "actions.json"), log });
  const authFailures: Error[] = [];
  const loop = new HomeLoop({
    client: new ControlPlaneClient({ baseUrl: url, token, timeoutMs: 2000 }),
    outbox,
    applier,
    log,
    status: () => agentStatus("ready", { outboxPending: outbox.size }),
    heartbeatIntervalMs: 50,
    batchDelayMs: 5,
    minBackoffMs: 10,
    maxBackoffMs: 100,
    onAuthFailure: (e) => authFailures.push(e),
    bootTrace,
  });
  const stop = async () => {
    await loop.stop();
    outbox.close();
  };
  return { outbox, sessions, applier, loop, authFailures, stop };
}

const note = (i: number): AgentEventDraft => ({
  type: "log",
  at: new Date().toISOString(),
  payload: { level: "info", msg: `event ${i}`, fields: { i } },
});

const msgs = (cp: FakeControlPlane) =>
  cp.state.applied.map((e) => (e.type === "log" ? e.payload.msg : `${e.type}`));

/** What the agent reports in its heartbeats. */
const agentStatus = (
  lifecycle: HeartbeatStatus["lifecycle"] = "ready",
  metrics: HeartbeatStatus["metrics"] = {},
): HeartbeatStatus => ({
  lifecycle,
  agentVersion: "test",
  uptimeSeconds: 1,
  startedAt: new Date().toISOString(),
  lastError: null,
  metrics,
});

describe("HomeLoop against a fake control plane", () => {
  it("sends its first heartbeat in the build's trace (BERTH_TRACEPARENT), later ones in their own", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-home-"));
    const state = newFakeState(TOKEN);
    const cp = await startFakeControlPlane(state);
    cleanups.push(() => cp.close());
    const boot = parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    const agent = makeAgent(dir, cp.url, TOKEN, boot);
    cleanups.push(agent.stop);
    agent.loop.start();
    await waitFor(() => state.traceparents.length >= 3, "three heartbeats");
    const [first, ...later] = state.traceparents.map((t) => parseTraceparent(t)!);
    expect(first!.traceId).toBe(boot!.traceId);
    expect(first!.spanId).not.toBe(boot!.spanId); // the agent's own span, a child of the build's
    for (const t of later) expect(t.traceId).not.toBe(boot!.traceId);
  });

  it("delivers every event exactly once across a control-plane restart and a lost response", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-home-"));
    const state = newFakeState(TOKEN);
    let cp = await startFakeControlPlane(state);
    const port = cp.port;
    cleanups.push(() => cp.close());
    const agent = makeAgent(dir, cp.url);
    cleanups.push(agent.stop);
    agent.loop.start();
    for (let i = 1; i <= 5; i++) agent.outbox.append(note(i));
    await waitFor(() => state.ackedThrough === 5 && agent.outbox.size === 0, "first five events acked");

    await cp.close(); // the control plane goes away; events keep arriving and wait in the outbox
    for (let i = 6; i <= 10; i++) agent.outbox.append(note(i));
    await waitFor(() => agent.loop.status.failures > 0, "the agent to notice");
    expect(agent.outbox.size).toBe(5);

    // Back with its database intact; the first batch is applied but the answer never arrives.
    state.crashAfterApply = true;
    cp = await startFakeControlPlane(state, port);
    await waitFor(() => agent.outbox.size === 0, "outbox drained after restart");

    expect(state.applied.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(msgs(cp)).toEqual(Array.from({ length: 10 }, (_, i) => `event ${i + 1}`));

    // A replayed (old) batch is acknowledged without being applied again.
    const client = new ControlPlaneClient({ baseUrl: cp.url, token: TOKEN });
    const replay = await client.sendEvents({ events: state.applied.slice(5, 8) });
    expect(replay).toEqual({ ackedThrough: 10, replayed: 3 });
    expect(state.applied).toHaveLength(10);
  });

  it("resumes numbering after an agent restart and renumbers for a new instance", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-home-"));
    const state = newFakeState(TOKEN);
    const cp = await startFakeControlPlane(state);
    cleanups.push(() => cp.close());
    let agent = makeAgent(dir, cp.url);
    agent.loop.start();
    agent.outbox.append(note(1));
    agent.outbox.append(note(2));
    await waitFor(() => state.ackedThrough === 2, "two acked");
    await agent.stop();

    agent = makeAgent(dir, cp.url);
    cleanups.push(agent.stop);
    agent.outbox.append(note(3));
    expect(agent.outbox.lastSeq).toBe(3);
    agent.loop.start();
    await waitFor(() => state.ackedThrough === 3, "third acked");
    await agent.loop.stop();

    // A new instance (wake): fresh control-plane record, new token, and the agent has pending events.
    const next = newFakeState("second-instance-token-abcdef");
    const cp2 = await startFakeControlPlane(next);
    cleanups.push(() => cp2.close());
    agent.outbox.append(note(4));
    agent.outbox.append(note(5));
    const agent2 = { ...makeAgentFromOutbox(dir, cp2.url, agent.outbox, "second-instance-token-abcdef") };
    agent2.loop.start();
    cleanups.push(() => agent2.loop.stop());
    await waitFor(() => next.ackedThrough === 2, "renumbered events acked by the new instance");
    expect(msgs(cp2)).toEqual(["event 4", "event 5"]);
    expect(next.applied.map((e) => e.seq)).toEqual([1, 2]);
  });

  it("surfaces a wrong token clearly, without leaking it, and keeps the events", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-home-"));
    const state = newFakeState(TOKEN);
    const cp = await startFakeControlPlane(state);
    cleanups.push(() => cp.close());
    const agent = makeAgent(dir, cp.url, "wrong-token-value-xyz");
    cleanups.push(agent.stop);
    agent.outbox.append(note(1));
    agent.loop.start();
    await waitFor(() => agent.loop.status.authFailed, "auth failure");
    expect(agent.loop.status.lastError).toMatch(
      /control plane rejected the agent token \(HTTP 401: unknown agent token\)/,
    );
    expect(agent.loop.status.lastError).not.toContain("wrong-token-value-xyz");
    expect(agent.authFailures).toHaveLength(1);
    expect(agent.outbox.size).toBe(1);
    expect(state.applied).toHaveLength(0);
  });

  it("applies desired state: sessions converge and keys are typed exactly once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-home-"));
    const state = newFakeState(TOKEN);
    state.desired = {
      sessions: ["main", "second"],
      sendKeys: [{ id: "k1", session: "main", keys: "echo hi", enter: true }],
    };
    const cp = await startFakeControlPlane(state);
    cleanups.push(() => cp.close());
    const agent = makeAgent(dir, cp.url);
    cleanups.push(agent.stop);
    agent.sessions.names.add("stale");
    agent.loop.start();
    await waitFor(() => state.heartbeats.some((h) => h.completed.some((c) => c.id === "k1")), "k1 reported");
    // The control plane keeps sending k1 until it acks; the agent must not type it again.
    await waitFor(() => state.heartbeats.length >= 5, "more heartbeats");
    state.desired = { ...state.desired, sendKeys: [], acks: { completed: ["k1"] } };
    const n = state.heartbeats.length;
    await waitFor(() => state.heartbeats.length >= n + 3, "heartbeats after ack");
    expect(agent.sessions.typed).toEqual(["main/claude:echo hi⏎"]);
    expect([...agent.sessions.names].sort()).toEqual(["main", "second"]);
    expect(state.heartbeats.at(-1)!.completed).toEqual([]);
    expect(state.heartbeats.find((h) => h.completed.length)!.completed[0]).toMatchObject({
      id: "k1",
      ok: true,
    });
    expect(state.traceparents.at(-1)).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });

  it("reports a backup request on a box without a repository as failed, once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-home-"));
    const state = newFakeState(TOKEN);
    state.desired = { backup: { id: "b1" } };
    const cp = await startFakeControlPlane(state);
    cleanups.push(() => cp.close());
    const agent = makeAgent(dir, cp.url);
    cleanups.push(agent.stop);
    agent.loop.start();
    await waitFor(() => state.heartbeats.some((h) => h.completed.length > 0), "backup result");
    const result = state.heartbeats.find((h) => h.completed.length > 0)!.completed[0]!;
    expect(result).toMatchObject({
      id: "b1",
      kind: "backup",
      ok: false,
      error: "this box has no backup repository configured",
    });
  });

  it("replaces an event the control plane refuses with a log line under the same seq", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-home-"));
    const state = newFakeState(TOKEN);
    state.rejectSeqs.add(2);
    const cp = await startFakeControlPlane(state);
    cleanups.push(() => cp.close());
    const agent = makeAgent(dir, cp.url);
    cleanups.push(agent.stop);
    agent.outbox.append(note(1));
    agent.outbox.append({
      type: "preview",
      at: new Date().toISOString(),
      payload: {
        port: 3000,
        protocol: "http",
        address: "0.0.0.0",
        state: "open",
        process: "vite",
        pid: 1,
        framework: "vite",
      },
    });
    agent.outbox.append(note(3));
    agent.loop.start();
    await waitFor(() => state.ackedThrough === 3, "all three acked");
    expect(state.applied.map((e) => e.type)).toEqual(["log", "log", "log"]);
    expect(state.applied[1]).toMatchObject({
      seq: 2,
      payload: { level: "error", msg: "control plane rejected preview event 2" },
    });
  });

  it("sends a requested heartbeat even when one was in flight (a lifecycle change is not delayed)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-home-"));
    const state = newFakeState(TOKEN);
    state.desired = { heartbeatIntervalSeconds: 300 };
    let answer!: () => void;
    state.heartbeatGate = new Promise<void>((r) => {
      answer = r;
    });
    const cp = await startFakeControlPlane(state);
    cleanups.push(() => cp.close());
    const agent = makeAgent(dir, cp.url);
    cleanups.push(agent.stop);
    agent.loop.start();
    // The control plane has the first heartbeat and holds its answer: the heartbeat is in flight.
    await waitFor(() => state.heartbeats.length === 1, "the first heartbeat to be in flight");
    agent.loop.requestHeartbeat();
    answer();
    state.heartbeatGate = null;
    // Without the fix the next heartbeat waited the full 300 s interval.
    await waitFor(() => state.heartbeats.length === 2, "the requested heartbeat");
  });

  it("flush sends everything pending and a final heartbeat", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-home-"));
    const state = newFakeState(TOKEN);
    const cp = await startFakeControlPlane(state);
    cleanups.push(() => cp.close());
    const agent = makeAgent(dir, cp.url);
    cleanups.push(agent.stop);
    for (let i = 1; i <= 1200; i++) agent.outbox.append(note(i));
    expect(await agent.loop.flush(5000)).toBe(true);
    expect(state.ackedThrough).toBe(1200);
    expect(state.heartbeats).toHaveLength(1);
  });
});

describe("HomeLoop shutdown", () => {
  it("starts nothing the final heartbeats ask for once stopped: they only report", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-home-"));
    const state = newFakeState(TOKEN);
    const cp = await startFakeControlPlane(state);
    cleanups.push(() => cp.close());
    const outbox = Outbox.open(join(dir, "outbox.jsonl"), { sync: false });
    const sessions = new MemorySessions();
    sessions.names.add("main");
    const started: string[] = [];
    const applier = new DesiredStateApplier({
      sessions,
      statePath: join(dir, "actions.json"),
      log,
      backup: async (action) => {
        started.push(`backup ${action.id}`);
      },
      restore: async (action) => {
        started.push(`restore ${action.id}`);
      },
    });
    const loop = new HomeLoop({
      client: new ControlPlaneClient({ baseUrl: cp.url, token: TOKEN, timeoutMs: 2000 }),
      outbox,
      applier,
      log,
      status: () => agentStatus("shutting_down"),
      heartbeatIntervalMs: 60_000,
      minBackoffMs: 10,
      maxBackoffMs: 100,
    });
    cleanups.push(() => outbox.close());
    loop.start();
    await waitFor(() => state.heartbeats.length === 1, "the first heartbeat");
    // SIGTERM: the agent stops the loop, then flushes. Meanwhile the control plane asks for work.
    await loop.stop();
    state.desired = {
      sessions: [],
      backup: { id: "b1" },
      sendKeys: [{ id: "k1", session: "main", keys: "rm -rf build", enter: true }],
    };
    expect(await loop.flush(5000)).toBe(true);
    expect(state.heartbeats).toHaveLength(2);
    // A backup started now is killed with the agent half-way (restic's lock left behind); keys typed and
    // sessions killed now change the box under an agent on its way out.
    expect(started).toEqual([]);
    expect(sessions.typed).toEqual([]);
    expect([...sessions.names]).toEqual(["main"]);
  });
});

describe("HomeLoop backoff", () => {
  it("keeps backing off while the control plane fails, however many events arrive", async () => {
    // The loop's clock and timers are virtual here: 1.5 s of failures take no real time, and the attempts
    // counted are exactly the ones the backoff allows, whatever the machine's load.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
    try {
      let requests = 0;
      const unavailable: typeof fetch = async () => {
        requests++;
        return new Response(null, { status: 503 });
      };
      const dir = mkdtempSync(join(tmpdir(), "berth-home-"));
      const outbox = Outbox.open(join(dir, "outbox.jsonl"), { sync: false });
      const loop = new HomeLoop({
        client: new ControlPlaneClient({
          baseUrl: "http://control-plane.test",
          token: TOKEN,
          fetch: unavailable,
        }),
        outbox,
        applier: new DesiredStateApplier({ sessions: null, statePath: join(dir, "a.json"), log }),
        log,
        status: () => agentStatus(),
        batchDelayMs: 5,
        minBackoffMs: 200,
        maxBackoffMs: 800,
      });
      loop.start();
      for (let i = 0; i < 75; i++) {
        outbox.append(note(i));
        await vi.advanceTimersByTimeAsync(20);
      }
      // 1.5 s of failures with 200-800 ms backoff is a handful of attempts, not one per event.
      expect(requests).toBeGreaterThanOrEqual(2);
      expect(requests).toBeLessThanOrEqual(8);
      expect(loop.status.lastError).toMatch(/HTTP 503/);
      const stopped = loop.stop();
      await vi.advanceTimersByTimeAsync(1_000);
      await stopped;
      outbox.close();
    } finally {
      vi.useRealTimers();
    }
  });
});

function makeAgentFromOutbox(dir: string, url: string, outbox: Outbox, token: string) {
  const applier = new DesiredStateApplier({ sessions: null, statePath: join(dir, "actions2.json"), log });
  const loop = new HomeLoop({
    client: new ControlPlaneClient({ baseUrl: url, token }),
    outbox,
    applier,
    log,
    status: () => agentStatus(),
    heartbeatIntervalMs: 50,
    batchDelayMs: 5,
    minBackoffMs: 10,
    maxBackoffMs: 100,
  });
  return { loop };
}

/**
 * A loop whose client talks to a stub: heartbeats succeed (acked through 0), event batches get the answer
 * `events` gives. `eventPosts` counts the batches.
 */
function stubbedLoop(
  events: (body: { events: AgentEvent[] }) => Response,
  backoff: { min: number; max: number },
) {
  const dir = mkdtempSync(join(tmpdir(), "berth-home-"));
  const outbox = Outbox.open(join(dir, "outbox.jsonl"), { sync: false });
  const stub = { eventPosts: 0 };
  const fetchImpl = (async (url: string | URL | Request, init?: RequestInit) => {
    if (!String(url).endsWith(AGENT_API_PATHS.events)) return Response.json({ eventsAckedThrough: 0 });
    stub.eventPosts++;
    return events(JSON.parse(String(init?.body)));
  }) as typeof fetch;
  const loop = new HomeLoop({
    client: new ControlPlaneClient({ baseUrl: "http://control-plane.test", token: TOKEN, fetch: fetchImpl }),
    outbox,
    applier: new DesiredStateApplier({ sessions: null, statePath: join(dir, "a.json"), log }),
    log,
    status: () => agentStatus(),
    heartbeatIntervalMs: 60_000,
    batchDelayMs: 5,
    minBackoffMs: backoff.min,
    maxBackoffMs: backoff.max,
  });
  return { outbox, loop, stub };
}

describe("HomeLoop and refused event batches", () => {
  it("backs off when the control plane refuses even the rejection log, instead of spinning", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
    try {
      const { outbox, loop, stub } = stubbedLoop(
        () => Response.json({ error: { code: "invalid_input", message: "refused" } }, { status: 400 }),
        { min: 200, max: 800 },
      );
      outbox.append(note(1));
      loop.start();
      // A loop that never waits keeps the virtual clock from moving: give up on it past any sane count.
      for (let i = 0; i < 75 && stub.eventPosts < 1_000; i++) await vi.advanceTimersByTimeAsync(20);
      // 1.5 s of refusals with 200-800 ms backoff is a handful of attempts, not a hot loop.
      expect(stub.eventPosts).toBeGreaterThanOrEqual(2);
      expect(stub.eventPosts).toBeLessThanOrEqual(8);
      expect(loop.status.lastError).toMatch(/refused/);
      const stopped = loop.stop();
      await vi.advanceTimersByTimeAsync(1_000);
      await stopped;
      outbox.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it("retries a batch a proxy or a deploy answers 404 or 408, rather than taking its events as refused", async () => {
    const delivered: AgentEvent[] = [];
    const answers = [404, 408];
    const { outbox, loop, stub } = stubbedLoop(
      ({ events }) => {
        const status = answers.shift();
        if (status) return new Response(`<html>${status}</html>`, { status });
        delivered.push(...events);
        return Response.json({ ackedThrough: events.at(-1)!.seq });
      },
      { min: 5, max: 20 },
    );
    cleanups.push(async () => {
      await loop.stop();
      outbox.close();
    });
    outbox.append(note(1));
    outbox.append(note(2));
    loop.start();
    await waitFor(() => outbox.size === 0, "the events to be delivered");
    expect(stub.eventPosts).toBeGreaterThanOrEqual(3);
    expect(delivered.map((e) => (e.type === "log" ? e.payload.msg : e.type))).toEqual(["event 1", "event 2"]);
  });
});
