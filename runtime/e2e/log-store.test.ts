/**
 * The central log store end to end: a box agent's shipped line is stored (redacted) and found by its
 * owner by workspace and time range, pages by cursor, is 404 to someone else; the control plane's own
 * lines carry request and trace ids and are stored when they concern a workspace; retention drops
 * whole days.
 */
import { execFile } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { AGENT_API_PATHS, type AgentEvent } from "../../box/protocol.ts";
import { upsertUser } from "../domain/identity/actor.ts";
import { LogStoreSink } from "../platform/log-sink.ts";
import { createLogger } from "../platform/logger.ts";
import { SYSTEM } from "../store/actors.ts";
import { sendHeartbeat } from "../test/agent.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { TEST_SECRET_KEYS } from "../test/keys.ts";
import { waitFor } from "../test/wait.ts";

/** Rejects on a non-zero exit, so resolving means the command exited 0. */
const execFileAsync = promisify(execFile);

describe("central log store", async () => {
  const printed: Array<Record<string, unknown>> = [];
  const stdout = new Writable({
    write(chunk, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line) printed.push(JSON.parse(line));
      done();
    },
  });
  // A loopback OTLP logs backend that records what it got (BERTH_LOG_OTLP_ENDPOINT).
  const shipped: string[] = [];
  const backend = createServer((req, res) => {
    let raw = "";
    req.on("data", (c) => {
      raw += c;
    });
    req.on("end", () => {
      shipped.push(raw);
      res.end("{}");
    });
  });
  await new Promise<void>((r) => backend.listen(0, "127.0.0.1", r));
  afterAll(() => new Promise<void>((r) => backend.close(() => r())));
  const sink = new LogStoreSink({ flushMs: 20 });
  const cp = await startTestControlPlane(
    { BERTH_LOG_OTLP_ENDPOINT: `http://127.0.0.1:${(backend.address() as AddressInfo).port}/v1/logs` },
    { logger: createLogger("debug", stdout, { stream: sink }), logSink: sink },
  );
  let agentToken = "";
  cp.driver.afterStart = (spec) => {
    agentToken = spec.secrets.agentToken;
  };
  const { pool } = cp.deps.database;
  const created = await json(
    await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: {} }),
  );
  const workspaceId: string = created.workspace.id;
  await waitFor("the agent token", () => agentToken);

  const bob = await upsertUser(cp.deps.store, "user_logs_bob");
  const bobCookie = `berth_session=${await cp.deps.authenticator.sessionFor(bob)}`;
  const logs = (query: string, headers: Record<string, string> = {}) =>
    cp.api(`/api/v1/workspaces/${workspaceId}/logs${query}`, {
      ...(Object.keys(headers).length ? { headers } : { token: cp.localToken }),
    });
  const ship = (events: AgentEvent[]) =>
    cp.api(AGENT_API_PATHS.events, {
      method: "POST",
      json: { events },
      headers: {
        authorization: `Bearer ${agentToken}`,
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      },
    });
  let seq = 0;
  const line = (msg: string, level: "info" | "warn" | "error" = "info", fields = {}): AgentEvent => ({
    seq: ++seq,
    at: new Date().toISOString(),
    type: "log",
    payload: { level, msg, fields },
  });

  it("stores an agent's line, redacted, and its owner finds it by workspace and time range", async () => {
    const before = new Date(Date.now() - 1000).toISOString();
    const res = await ship([
      line("git push with Authorization: Bearer ghp_abcdefghijklmnopqrstuvwxyz0123 failed", "error", {
        password: "hunter2",
        repo: "app",
      }),
    ]);
    expect(res.status).toBe(200);
    const after = new Date(Date.now() + 1000).toISOString();
    const page = await json(
      await logs(`?since=${encodeURIComponent(before)}&until=${encodeURIComponent(after)}&q=git%20push`),
    );
    expect(page.entries).toHaveLength(1);
    const [entry] = page.entries;
    expect(entry).toMatchObject({
      workspaceId,
      source: "agent",
      level: "error",
      fields: { password: "[redacted]", repo: "app" },
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    });
    expect(entry.message).toBe("git push with Authorization: Bearer [redacted] failed");
    // Nowhere in the table either, whatever the query.
    const raw = await pool.query("SELECT message, fields::text AS f FROM log_entries");
    expect(JSON.stringify(raw.rows)).not.toMatch(/ghp_abc|hunter2/);
    // Shipped to the OTLP backend too, redacted as stored.
    const otlp = await waitFor("the shipped line", () => shipped.find((b) => b.includes("git push with")));
    expect(otlp).toContain("Bearer [redacted]");
    expect(otlp).not.toMatch(/ghp_abc|hunter2/);
    // Out of the time range: not there.
    const earlier = await json(await logs(`?until=${encodeURIComponent(before)}&q=git%20push`));
    expect(earlier.entries).toHaveLength(0);
  });

  it("is 404 for someone else, for the owner's workspace and the admin route alike", async () => {
    expect((await logs("", { cookie: bobCookie })).status).toBe(404);
    expect((await cp.api("/api/v1/admin/logs", { headers: { cookie: bobCookie } })).status).toBe(404);
    // The local owner is the admin: the admin route reaches every line.
    const all = await json(
      await cp.api(`/api/v1/admin/logs?workspace=${workspaceId}`, { token: cp.localToken }),
    );
    expect(all.entries.length).toBeGreaterThan(0);
  });

  it("filters by level and pages by cursor, newest first", async () => {
    await ship(Array.from({ length: 5 }, (_, i) => line(`paging line ${i}`, i % 2 ? "warn" : "info")));
    const first = await json(await logs("?q=paging&limit=2"));
    expect(first.entries.map((e: { message: string }) => e.message)).toEqual([
      "paging line 4",
      "paging line 3",
    ]);
    const second = await json(await logs(`?q=paging&limit=2&cursor=${first.nextCursor}`));
    expect(second.entries.map((e: { message: string }) => e.message)).toEqual([
      "paging line 2",
      "paging line 1",
    ]);
    const third = await json(await logs(`?q=paging&limit=2&cursor=${second.nextCursor}`));
    expect(third.entries.map((e: { message: string }) => e.message)).toEqual(["paging line 0"]);
    expect(third.nextCursor).toBeNull();
    const warnings = await json(await logs("?q=paging&level=warn"));
    expect(warnings.entries.map((e: { message: string }) => e.message)).toEqual([
      "paging line 3",
      "paging line 1",
    ]);
  });

  it("prints lines for operators with `berth logs`, oldest of the page first, and the next cursor", async () => {
    const cli = fileURLToPath(new URL("../app/cli.ts", import.meta.url));
    // Run asynchronously: this process hosts the control plane, whose event loop (and its keep-alive
    // timers) a synchronous spawn would stop for as long as the CLI runs.
    const run = await execFileAsync(
      process.execPath,
      [cli, "logs", "--workspace", workspaceId, "--q", "paging", "--limit", "2"],
      {
        env: {
          ...process.env,
          DATABASE_URL: cp.deps.database.url,
          BERTH_SECRET_KEYS: TEST_SECRET_KEYS,
          BERTH_LOG_LEVEL: "error",
        },
        encoding: "utf8",
        timeout: 90_000,
      },
    );
    expect(run.stderr).toMatch(/^older lines: --cursor \S+\n$/);
    const lines = run.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^\\S+Z WARN  agent +${workspaceId} paging line 3$`));
    expect(lines[1]).toMatch(/INFO {2}agent .* paging line 4$/);
  });

  it("answers bad queries with a 400 naming the field", async () => {
    for (const [query, field] of [
      ["?level=loud", "query.level"],
      ["?since=yesterday", "query.since"],
      ["?limit=0", "query.limit"],
      ["?cursor=nope", "cursor"],
      ["?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "query.until"],
      // Text and times Postgres refuses: a NUL in the search text, a year 0 it cannot represent.
      ["?q=a%00b", "query.q"],
      ["?since=0000-01-01T00:00:00Z", "query.since"],
    ]) {
      const res = await logs(query!);
      expect(res.status, query).toBe(400);
      expect((await res.json()).error.message).toContain(field);
    }
  });

  it("puts the request id and trace id on the control plane's lines, and stores those about a workspace", async () => {
    // The box checks in ready, so the workspace can be hibernated.
    await sendHeartbeat(cp, agentToken, {}, { uptimeSeconds: 1 });
    await waitFor(
      "ready",
      async () =>
        (await pool.query("SELECT state FROM workspaces WHERE id = $1", [workspaceId])).rows[0].state ===
        "ready",
    );
    const res = await cp.api(`/api/v1/workspaces/${workspaceId}/hibernate`, {
      method: "POST",
      token: cp.localToken,
      headers: { "x-request-id": "req-logs-1" },
    });
    expect(res.status).toBe(202);
    const access = printed.find((l) => l.msg === "request" && l.requestId === "req-logs-1");
    expect(access).toMatchObject({
      requestId: "req-logs-1",
      traceId: expect.stringMatching(/^[0-9a-f]{32}$/),
    });
    // The build it queued logs "build finished" with the workspace id, in the request's trace.
    const stored = await waitFor("the hibernate build's stored line, in the request's trace", async () => {
      const page = await json(await logs("?source=control-plane&q=build%20finished"));
      return page.entries.find((e: { traceId: string }) => e.traceId === access!.traceId);
    });
    expect(stored).toMatchObject({ workspaceId, source: "control-plane", fields: { transition: "stop" } });
  });

  it("stores the control plane's lines even when one holds text Postgres refuses, losing none of the batch", async () => {
    // A NUL (from a box's output) and half a surrogate pair (a cut emoji) would fail the batch's one INSERT:
    // every line of that batch was dropped.
    cp.deps.log.warn({ workspaceId, out: "x\u0000y", "k\ud83d": ["\ud83d"] }, "odd line \u0000");
    cp.deps.log.warn({ workspaceId }, "its ordinary neighbour");
    await sink.flush();
    const { rows } = await pool.query(
      "SELECT message, fields->>'out' AS out, fields->'k\ufffd' AS k FROM log_entries WHERE message IN ('odd line \ufffd', 'its ordinary neighbour') ORDER BY id",
    );
    expect(rows).toEqual([
      { message: "odd line \ufffd", out: "x\ufffdy", k: ["\ufffd"] },
      { message: "its ordinary neighbour", out: null, k: null },
    ]);
  });

  it("drops whole days past retention, and keeps the rest", async () => {
    const scope = cp.deps.store.as(SYSTEM.logs).logs;
    const old = new Date(Date.now() - 10 * 86_400_000);
    await scope.ensurePartitions(old, 0);
    await scope.append(
      [
        {
          time: old,
          workspaceId,
          instanceId: null,
          source: "agent",
          level: "info",
          message: "ancient line",
          fields: {},
          traceId: null,
        },
      ],
      old,
    );
    expect((await json(await logs("?q=ancient"))).entries).toHaveLength(1);
    const dropped = await cp.logRetention.tick();
    expect(dropped.length).toBeGreaterThanOrEqual(2); // that day and the one before it
    expect((await json(await logs("?q=ancient"))).entries).toHaveLength(0);
    expect((await json(await logs("?q=paging"))).entries).toHaveLength(5);
  });
});
