/**
 * The runtime side of the agent API, driven over HTTP with the agent's own client (box/home/client.ts)
 * wherever it fits, so both ends of the contract are exercised together.
 */
import { describe, expect, it } from "vitest";
import {
  AGENT_API_PATHS,
  type AgentEvent,
  type HeartbeatRequestInput,
  heartbeatResponse,
  MAX_USER_SECRETS,
} from "../../box/protocol.ts";
import { sendHeartbeat } from "../test/agent.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { waitFor } from "../test/wait.ts";

describe("agent API", async () => {
  const cp = await startTestControlPlane();
  let agentToken = "";
  cp.driver.afterStart = (spec) => {
    agentToken = spec.secrets.agentToken;
  };
  const { pool } = cp.deps.database;
  const created = await json(
    await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: {} }),
  );
  const workspaceId: string = created.workspace.id;
  await waitFor(
    "starting",
    async () =>
      (await pool.query("SELECT state FROM workspaces WHERE id = $1", [workspaceId])).rows[0].state ===
      "starting",
  );

  const agent = (path: string, body: unknown, token = agentToken) =>
    cp.api(path, { method: "POST", json: body, headers: { authorization: `Bearer ${token}` } });
  const heartbeat = (over: Partial<HeartbeatRequestInput> = {}) => sendHeartbeat(cp, agentToken, {}, over);
  const note = (seq: number, dedupeKey: string, session: string | null = "main"): AgentEvent => ({
    seq,
    at: new Date().toISOString(),
    type: "notification",
    payload: {
      kind: "permission_prompt",
      source: "hook",
      session,
      title: "Claude needs permission",
      message: "Bash: rm -rf build",
      dedupeKey,
    },
  });

  it("refuses session names tmux could execute, naming the field", async () => {
    for (const name of ["x#(touch /tmp/pwned)", "UPPER", "a".repeat(33), "../x", ""]) {
      const res = await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, {
        method: "POST",
        token: cp.localToken,
        json: { name },
      });
      expect(res.status).toBe(400);
      expect((await json(res)).error.field).toBe("name");
    }
    expect((await pool.query("SELECT count(*)::int AS n FROM sessions")).rows[0].n).toBe(0);
  });

  it("a ready heartbeat makes the workspace ready and returns desired state", async () => {
    await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, {
      method: "POST",
      token: cp.localToken,
      json: { name: "main" },
    });
    const res = await heartbeat({ tailnetIp: "100.64.0.7" });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body).toMatchObject({ sessions: ["main"], backup: null, sendKeys: [], eventsAckedThrough: 0 });
    const ws = await pool.query("SELECT state FROM workspaces WHERE id = $1", [workspaceId]);
    expect(ws.rows[0].state).toBe("ready");
    const inst = await pool.query(
      "SELECT tailnet_ip, agent_lifecycle, ready_at FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
      [workspaceId],
    );
    // The claimed tailnet address is not stored: nothing at 100.64.0.7 proved it (tailnet-claims.test.ts).
    expect(inst.rows[0]).toMatchObject({ tailnet_ip: null, agent_lifecycle: "ready" });
    expect(inst.rows[0].ready_at).not.toBeNull();
  });

  it("turns a hook notification into exactly one row, even when the batch is replayed", async () => {
    const batch = { events: [note(1, "hook-1"), note(2, "hook-2")] };
    expect(await json(await agent(AGENT_API_PATHS.events, batch))).toEqual({ ackedThrough: 2, replayed: 0 });
    // A control-plane restart made the agent resend: acknowledged, not applied again.
    expect(await json(await agent(AGENT_API_PATHS.events, batch))).toEqual({ ackedThrough: 2, replayed: 2 });
    const rows = await pool.query(
      "SELECT dedupe_key, session_id FROM notifications WHERE workspace_id = $1 ORDER BY dedupe_key",
      [workspaceId],
    );
    expect(rows.rows.map((r) => r.dedupe_key)).toEqual(["hook-1", "hook-2"]);
    expect(rows.rows[0].session_id).not.toBeNull();
    const inbox = await json(await cp.api("/api/v1/notifications", { token: cp.localToken }));
    expect(inbox.unread).toBe(2);
    expect(inbox.notifications[0]).toMatchObject({ title: "Claude needs permission", sessionName: "main" });
  });

  it("waits for a missing seq instead of applying past a gap", async () => {
    const res = await json(await agent(AGENT_API_PATHS.events, { events: [note(4, "late")] }));
    expect(res).toEqual({ ackedThrough: 2, replayed: 0 });
    expect((await pool.query("SELECT 1 FROM notifications WHERE dedupe_key = 'late'")).rowCount).toBe(0);
    expect(
      await json(await agent(AGENT_API_PATHS.events, { events: [note(3, "three"), note(4, "late")] })),
    ).toEqual({
      ackedThrough: 4,
      replayed: 0,
    });
  });

  it("records detected previews and closes them when the port closes", async () => {
    const preview = (seq: number, state: "open" | "closed"): AgentEvent => ({
      seq,
      at: new Date().toISOString(),
      type: "preview",
      payload: {
        port: 5173,
        protocol: "http",
        address: "127.0.0.1",
        state,
        process: "node vite",
        pid: 42,
        framework: "vite",
      },
    });
    await agent(AGENT_API_PATHS.events, { events: [preview(5, "open")] });
    const open = await json(
      await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, { token: cp.localToken }),
    );
    expect(open.sessions).toHaveLength(1);
    expect(
      (
        await pool.query("SELECT framework FROM previews WHERE workspace_id = $1 AND closed_at IS NULL", [
          workspaceId,
        ])
      ).rows,
    ).toEqual([{ framework: "vite" }]);
    await agent(AGENT_API_PATHS.events, { events: [preview(6, "closed")] });
    expect(
      (
        await pool.query("SELECT 1 FROM previews WHERE workspace_id = $1 AND closed_at IS NULL", [
          workspaceId,
        ])
      ).rowCount,
    ).toBe(0);
  });

  it("rejects a wrong token, bad input and oversized batches clearly, changing nothing", async () => {
    const wrong = await agent(AGENT_API_PATHS.events, { events: [note(7, "x")] }, "bat_wrong");
    expect(wrong.status).toBe(401);
    expect((await json(wrong)).error.code).toBe("agent_unauthorized");

    const bad = await agent(AGENT_API_PATHS.events, {
      events: [{ ...note(7, "x"), payload: { ...note(7, "x").payload, session: "Bad;Name" } }],
    });
    expect(bad.status).toBe(400);
    expect((await json(bad)).error.message).toMatch(/events\.0\.payload\.session/);

    const many = Array.from({ length: 501 }, (_, i) => note(7 + i, `n${i}`));
    const tooMany = await agent(AGENT_API_PATHS.events, { events: many });
    expect(tooMany.status).toBe(400);
    expect((await json(tooMany)).error.message).toMatch(/at most 500 events/);

    const huge = await agent(AGENT_API_PATHS.events, { events: [note(7, "x")], pad: "x".repeat(1_100_000) });
    expect(huge.status).toBe(413);

    const { rows } = await pool.query(
      "SELECT events_acked_through FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
      [workspaceId],
    );
    expect(Number(rows[0].events_acked_through)).toBe(6);
  });

  it("stores text Postgres cannot hold (NUL, half a surrogate pair) instead of failing the request", async () => {
    // A 500 makes the agent resend the same batch forever: one such event would block every later one.
    const seq = Number(
      (
        await pool.query(
          "SELECT events_acked_through AS n FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
          [workspaceId],
        )
      ).rows[0].n,
    );
    const odd = "tab\u0000le \ud83d"; // a NUL from a pane, and an emoji cut in half by a length cap
    const events: AgentEvent[] = [
      {
        seq: seq + 1,
        at: new Date().toISOString(),
        type: "notification",
        payload: {
          kind: "permission_prompt",
          source: "hook",
          session: "main",
          title: odd,
          message: odd,
          dedupeKey: "odd-text",
        },
      },
      {
        seq: seq + 2,
        at: new Date().toISOString(),
        type: "log",
        payload: { level: "warn", msg: odd, fields: { [odd]: odd } },
      },
    ];
    const res = await agent(AGENT_API_PATHS.events, { events });
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ ackedThrough: seq + 2, replayed: 0 });
    const stored = await pool.query("SELECT title, body FROM notifications WHERE dedupe_key = 'odd-text'");
    expect(stored.rows).toEqual([{ title: "tab\ufffdle \ufffd", body: "tab\ufffdle \ufffd" }]);
    const line = await pool.query("SELECT message, fields FROM log_entries WHERE workspace_id = $1", [
      workspaceId,
    ]);
    expect(line.rows).toContainEqual({
      message: "tab\ufffdle \ufffd",
      fields: { "tab\ufffdle \ufffd": "tab\ufffdle \ufffd" },
    });
    // The heartbeat's free text too: a failing heartbeat leaves the box without its desired state.
    expect((await heartbeat({ lastError: odd })).status).toBe(200);
    const inst = await pool.query(
      "SELECT agent_last_error FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
      [workspaceId],
    );
    expect(inst.rows[0].agent_last_error).toBe("tab\ufffdle \ufffd");
    await heartbeat({ lastError: null });
  });

  it("hands the user's secrets and guided starts to the agent, and resends the secrets only when they change", async () => {
    const secret = (name: string, value: string) =>
      cp.api(`/api/v1/workspaces/${workspaceId}/secrets/${name}`, {
        method: "PUT",
        token: cp.localToken,
        json: { value },
      });
    expect((await secret("API_KEY", "first-value")).status).toBe(201);
    await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, {
      method: "POST",
      token: cp.localToken,
      json: { name: "guided", mode: "guided", project: "app", task: "build it" },
    });
    const first = await json(await heartbeat());
    expect(first.environment).toEqual([{ name: "API_KEY", value: "first-value" }]);
    expect(first.guided).toEqual([{ session: "guided", project: "app", task: "build it" }]);
    const again = await json(await heartbeat({ environmentVersion: first.environmentVersion }));
    expect(again.environment).toBeUndefined();
    expect((await secret("API_KEY", "second-value")).status).toBe(200);
    const changed = await json(await heartbeat({ environmentVersion: first.environmentVersion }));
    expect(changed.environment).toEqual([{ name: "API_KEY", value: "second-value" }]);
    expect(changed.environmentVersion).not.toBe(first.environmentVersion);
  });

  it("holds at most MAX_USER_SECRETS even under concurrent writes, so the agent can still read its answer", async () => {
    const put = (name: string) =>
      cp.api(`/api/v1/workspaces/${workspaceId}/secrets/${name}`, {
        method: "PUT",
        token: cp.localToken,
        json: { value: `value-of-${name}` },
      });
    const count = async () =>
      (await pool.query("SELECT count(*)::int AS n FROM user_secrets WHERE workspace_id = $1", [workspaceId]))
        .rows[0].n as number;
    for (let i = await count(); i < MAX_USER_SECRETS - 2; i++)
      expect((await put(`FILL_${i}`)).status).toBe(201);
    const statuses = (await Promise.all(Array.from({ length: 12 }, (_, i) => put(`RACE_${i}`)))).map(
      (r) => r.status,
    );
    expect(statuses.filter((s) => s === 201)).toHaveLength(2);
    expect(statuses.filter((s) => s === 409)).toHaveLength(10);
    expect(await count()).toBe(MAX_USER_SECRETS);
    // What the agent receives must pass the agent's own schema (environment holds at most MAX_USER_SECRETS).
    expect(heartbeatResponse.safeParse(await json(await heartbeat())).success).toBe(true);
    await pool.query("DELETE FROM user_secrets WHERE workspace_id = $1 AND name ~ '^(FILL|RACE)_'", [
      workspaceId,
    ]);
  });

  it("records a backup's outcome even when its figures do not fit the columns", async () => {
    // bytes_added and files are bigint, duration_ms an integer: the protocol allows any non-negative finite
    // figure, and one that did not fit failed the batch with a 500 that the agent resends forever.
    const {
      rows: [backup],
    } = await pool.query(
      "INSERT INTO backups (workspace_id, trigger, status) VALUES ($1, 'manual', 'running') RETURNING id",
      [workspaceId],
    );
    const seq = Number(
      (
        await pool.query(
          "SELECT events_acked_through AS n FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
          [workspaceId],
        )
      ).rows[0].n,
    );
    const res = await agent(AGENT_API_PATHS.events, {
      events: [
        {
          seq: seq + 1,
          at: new Date().toISOString(),
          type: "backup",
          payload: {
            backupId: backup.id,
            operation: "backup",
            phase: "succeeded",
            snapshotId: "0123abcd",
            bytesAdded: 1024.5,
            files: 1e20,
            durationMs: 3e9,
          },
        },
      ] satisfies AgentEvent[],
    });
    expect(res.status).toBe(200);
    const { rows } = await pool.query(
      "SELECT status, bytes_added, files, duration_ms FROM backups WHERE id = $1",
      [backup.id],
    );
    expect(rows[0]).toEqual({ status: "succeeded", bytes_added: "1025", files: null, duration_ms: null });
  });

  it("takes a box clock that runs ahead as now: its later, correct times still apply", async () => {
    const cursor = async () =>
      Number(
        (
          await pool.query(
            "SELECT events_acked_through AS n FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
            [workspaceId],
          )
        ).rows[0].n,
      );
    const state = (seq: number, at: Date, s: "working" | "idle"): AgentEvent => ({
      seq,
      at: at.toISOString(),
      type: "claude_state",
      payload: { session: "main", state: s, detail: null },
    });
    // The box's clock is a day ahead, then NTP sets it right.
    const seq = await cursor();
    const tomorrow = new Date(Date.now() + 86_400_000);
    expect(
      (await agent(AGENT_API_PATHS.events, { events: [state(seq + 1, tomorrow, "working")] })).status,
    ).toBe(200);
    expect(
      (await agent(AGENT_API_PATHS.events, { events: [state(seq + 2, new Date(), "idle")] })).status,
    ).toBe(200);
    const { rows } = await pool.query(
      `SELECT s.claude_state, s.claude_state_since <= now() AS since_past, w.last_activity_at <= now() AS activity_past
         FROM sessions s JOIN workspaces w ON w.id = s.workspace_id
        WHERE s.workspace_id = $1 AND s.name = 'main' AND s.closed_at IS NULL`,
      [workspaceId],
    );
    // Idle autostop counts from last_activity_at: one in the future would keep the box up all day.
    expect(rows[0]).toEqual({ claude_state: "idle", since_past: true, activity_past: true });
    // A time Postgres cannot store (the year 0) fails nothing either.
    const year0 = "0000-06-01T00:00:00Z";
    const completed = [
      { id: "0f8fad5b-d9cb-469f-a165-70867728950e", kind: "keys" as const, ok: true, at: year0 },
    ];
    expect((await heartbeat({ completed })).status).toBe(200);
    const late = { ...note(seq + 3, "year-0"), at: year0 };
    expect((await agent(AGENT_API_PATHS.events, { events: [late] })).status).toBe(200);
  });

  it("stops accepting the token once the instance ends", async () => {
    await cp.api(`/api/v1/workspaces/${workspaceId}/hibernate`, { method: "POST", token: cp.localToken });
    await waitFor(
      "hibernated",
      async () =>
        (await pool.query("SELECT state FROM workspaces WHERE id = $1", [workspaceId])).rows[0].state ===
        "hibernated",
    );
    expect((await heartbeat()).status).toBe(401);
  });
});
