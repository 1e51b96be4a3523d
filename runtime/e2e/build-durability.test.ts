import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { upsertUser } from "../domain/identity/actor.ts";
import { agentChecksIn } from "../test/agent.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { ScriptedDriver } from "../test/scripted-driver.ts";
import { waitFor } from "../test/wait.ts";

interface SseEvent {
  id?: number;
  event: string;
  data: unknown;
}

/** Reads SSE events until `stopAfter` says so or the stream ends. */
async function readSse(
  res: Response,
  stopAfter: (e: SseEvent, all: SseEvent[]) => boolean,
): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return events;
    buf += value;
    let i = buf.indexOf("\n\n");
    while (i >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const e: SseEvent = { event: "message", data: null };
      for (const line of frame.split("\n")) {
        if (line.startsWith("id: ")) e.id = Number(line.slice(4));
        else if (line.startsWith("event: ")) e.event = line.slice(7);
        else if (line.startsWith("data: ")) e.data = JSON.parse(line.slice(6));
      }
      if (frame.includes("data: ")) {
        events.push(e);
        if (stopAfter(e, events)) {
          await reader.cancel();
          return events;
        }
      }
      i = buf.indexOf("\n\n");
    }
  }
}

describe("build log over SSE", async () => {
  const cp = await startTestControlPlane();
  cp.driver.afterStart = agentChecksIn(cp);

  it("replays from the start, follows live, and resumes from Last-Event-ID without gaps or repeats", async () => {
    const steps = Array.from({ length: 40 }, (_, i) => `step ${i + 1}`);
    cp.driver.script("start", { kind: "succeed", steps });
    // The build logs its steps and is held running: the second reader below replays what it missed, then
    // has to follow live for the rest.
    let release!: () => void;
    cp.driver.gate = new Promise<void>((r) => {
      release = r;
    });
    const created = await json(
      await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: {} }),
    );
    const url = `/api/v1/builds/${created.build.id}/log`;

    const first = await readSse(await cp.api(url, { token: cp.localToken }), (_e, all) => all.length === 10);
    const lastId = first.at(-1)!.id!;
    const resumed = await cp.api(url, { token: cp.localToken, headers: { "last-event-id": String(lastId) } });
    cp.driver.gate = null;
    release();
    const rest = await readSse(resumed, (e) => e.event === "end");
    expect(rest.at(-1)).toEqual({ event: "end", data: { status: "succeeded" } });
    const seqs = [...first, ...rest].filter((e) => e.event === "line").map((e) => e.id);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    const messages = [...first, ...rest].map((e) => (e.data as { message?: string }).message);
    for (const step of steps) expect(messages).toContain(step);
    expect(messages).toContain("done");
  });

  it("401s a bad token, 404s another user's build log and rejects a bad Last-Event-ID", async () => {
    const [{ id }] = (await cp.deps.database.pool.query("SELECT id FROM workspace_builds LIMIT 1")).rows;
    const unknown = await cp.api(`/api/v1/builds/${id}/log`, { token: "x".repeat(43) });
    expect(unknown.status).toBe(401);
    const mallory = await upsertUser(cp.deps.store, "user_build_log_mallory");
    const cookie = `berth_session=${await cp.deps.authenticator.sessionFor(mallory)}`;
    const other = await cp.api(`/api/v1/builds/${id}/log`, { headers: { cookie } });
    expect(other.status).toBe(404);
    const bad = await cp.api(`/api/v1/builds/${id}/log`, {
      token: cp.localToken,
      headers: { "last-event-id": "-3" },
    });
    expect(bad.status).toBe(400);
  });
});

describe("a replica killed mid-build", async () => {
  // The API replica runs no builds; the doomed replica claims the build and dies holding it.
  const api = await startTestControlPlane({}, { runBuilds: false });
  const databaseUrl = api.deps.database.url;

  it("has its build resumed by a survivor, never lost", async () => {
    const replica = spawn(
      process.execPath,
      [fileURLToPath(new URL("../test/replica-main.ts", import.meta.url)), databaseUrl],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    try {
      await waitFor(
        "replica listening",
        () => new Promise((r) => replica.stdout!.once("data", () => r(true))),
      );
      const created = await json(
        await api.api("/api/v1/workspaces", { method: "POST", token: api.localToken, json: {} }),
      );
      const buildId = created.build.id;
      const row = async () =>
        (await api.deps.database.pool.query("SELECT * FROM workspace_builds WHERE id = $1", [buildId]))
          .rows[0];
      await waitFor(
        "the doomed replica to claim the build",
        async () => (await row()).worker_id === "doomed-replica",
      );
      replica.kill("SIGKILL");
      await new Promise((r) => replica.once("exit", r));

      const survivor = await startTestControlPlane(
        { DATABASE_URL: databaseUrl },
        {
          driver: new ScriptedDriver(),
          worker: { workerId: "survivor" },
        },
      );
      survivor.driver.afterStart = agentChecksIn(survivor);
      await waitFor(
        "the survivor to finish the build",
        async () => (await row()).status === "succeeded",
        20_000,
      ).catch(async (e) => {
        console.log(await row());
        throw e;
      });
      const done = await row();
      expect(done.worker_id).toBe("survivor");
      expect(done.attempt).toBe(2);
      const log = await api.deps.database.pool.query(
        "SELECT message FROM workspace_build_logs WHERE build_id = $1 ORDER BY seq",
        [buildId],
      );
      expect(log.rows.map((r) => r.message)).toContain(
        "the control plane running this build stopped; resuming on another",
      );
      const ws = await api.deps.database.pool.query("SELECT state FROM workspaces WHERE id = $1", [
        created.workspace.id,
      ]);
      expect(ws.rows[0].state).toBe("ready");
    } finally {
      replica.kill("SIGKILL");
    }
  });
});

describe("a hung worker", async () => {
  it("fails a build whose heartbeat stopped past the limit, leaving the workspace actionable", async () => {
    const cp = await startTestControlPlane({}, { worker: { staleAfterMs: 1_000, heartbeatMs: 60_000 } });
    cp.driver.script("start", { kind: "hang" });
    const created = await json(
      await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: {} }),
    );
    // The worker is alive (holds the lock) but silent; an operator-facing reaper on another worker acts.
    const { BuildWorker } = await import("../workers/build-worker.ts");
    const other = new BuildWorker({
      store: cp.deps.store,
      listener: cp.deps.listener,
      driver: new ScriptedDriver(),
      log: cp.deps.log,
      metrics: cp.deps.metrics,
      controlPlaneUrl: cp.url,
      staleAfterMs: 1_000,
      workerId: "other",
    });
    await waitFor(
      "build running",
      async () =>
        (
          await cp.deps.database.pool.query("SELECT status FROM workspace_builds WHERE id = $1", [
            created.build.id,
          ])
        ).rows[0].status === "running",
    );
    await waitFor(
      "the reaper to fail the silent build",
      async () => {
        await other.reap();
        return (
          (
            await cp.deps.database.pool.query("SELECT status FROM workspace_builds WHERE id = $1", [
              created.build.id,
            ])
          ).rows[0].status === "failed"
        );
      },
      30_000,
      300,
    );
    const ws = await cp.deps.database.pool.query("SELECT state FROM workspaces WHERE id = $1", [
      created.workspace.id,
    ]);
    expect(ws.rows[0].state).toBe("failed");
    const wake = await cp.api(`/api/v1/workspaces/${created.workspace.id}/wake`, {
      method: "POST",
      token: cp.localToken,
    });
    expect(wake.status).toBe(202);
  });
});

describe("a worker that loses its workspace lock", async () => {
  it("stops its build before another replica resumes it: never two operations on one workspace", async () => {
    // The worker heartbeats rarely, so only the lost lock itself can tell it to stop.
    const cp = await startTestControlPlane({}, { worker: { heartbeatMs: 60_000 } });
    const { pool } = cp.deps.database;
    let open!: () => void;
    cp.driver.gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const created = await json(
      await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: {} }),
    );
    const buildId = created.build.id as string;
    const workspaceId = created.workspace.id as string;
    await waitFor("the build to reach the driver", async () => cp.driver.calls.length === 1);

    // The connection holding the workspace's advisory lock dies (a Postgres failover, a network blip).
    const { rows } = await pool.query(
      `WITH k AS (SELECT hashtextextended('workspace:' || $1, 0) AS k)
       SELECT pg_terminate_backend(l.pid) AS ok FROM pg_locks l, k
        WHERE l.locktype = 'advisory' AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = ((k.k >> 32) & 4294967295)::text::oid AND l.objid = (k.k & 4294967295)::text::oid`,
      [workspaceId],
    );
    expect(rows).toEqual([{ ok: true }]);

    // Another replica's reaper finds the lock free and the build running.
    const { BuildWorker } = await import("../workers/build-worker.ts");
    const other = new BuildWorker({
      store: cp.deps.store,
      listener: cp.deps.listener,
      driver: cp.driver,
      log: cp.deps.log,
      metrics: cp.deps.metrics,
      controlPlaneUrl: cp.url,
      workerId: "other",
      pollMs: 50,
      heartbeatMs: 200,
    });
    await other.start();
    try {
      await waitFor("the other replica to take the build", async () => cp.driver.calls.length >= 2);
      expect(cp.driver.maxConcurrentPerWorkspace).toBe(1);
      open();
      await waitFor(
        "the build to finish",
        async () =>
          (await pool.query("SELECT status FROM workspace_builds WHERE id = $1", [buildId])).rows[0]
            .status === "succeeded",
      );
      expect(cp.driver.maxConcurrentPerWorkspace).toBe(1);
    } finally {
      open();
      await other.stop();
    }
  });
});
