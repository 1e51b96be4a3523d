/**
 * The local box: time-to-ready through the whole product (API → queue → local driver → agent ready), the
 * median of 5 creates, against the bare agent start (spawn + layout + endpoints until /healthz says ready)
 * as the baseline; and keystroke echo round-trip through the agent's built-in terminal server against a
 * plain WebSocket echo on the same loopback (the transport's floor).
 */
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { WebSocket, WebSocketServer } from "ws";
import { measureEchoRoundTrip } from "../../box/bench/terminal.ts";
import type { WorkspaceSpec } from "../../stacks/driver.ts";
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { type BenchPostgres, benchControlPlane, benchLocalDriver, fmt, median, table } from "./harness.ts";

const QUIET = { stage() {}, line() {} };
const BENCH_CREDENTIAL = "bench:bench";

function benchSpec(workspaceId: string, controlPlaneUrl: string): WorkspaceSpec {
  return {
    workspaceId,
    ownerId: "bench",
    location: "local",
    serverType: "local",
    volumeSizeGb: 10,
    controlPlaneUrl,
    secrets: { agentToken: "bench-agent-token", ttydCredential: BENCH_CREDENTIAL, resticPassword: "bench" },
  };
}

async function wsEchoFloor(n: number): Promise<{ p50: number; p99: number }> {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  wss.on("connection", (ws) => ws.on("message", (m) => ws.send(m)));
  await new Promise((r) => wss.once("listening", r));
  const { port } = wss.address() as { port: number };
  const ws = new WebSocket(`ws://127.0.0.1:${port}`);
  await new Promise((r) => ws.once("open", r));
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await new Promise<void>((resolve) => {
      ws.once("message", () => resolve());
      ws.send("x");
    });
    samples.push(performance.now() - t);
  }
  ws.close();
  wss.close();
  samples.sort((a, b) => a - b);
  return { p50: samples[Math.floor(n / 2)]!, p99: samples[Math.ceil(n * 0.99) - 1]! };
}

export async function benchLocalBox(pgs: BenchPostgres): Promise<void> {
  const { root, driver } = benchLocalDriver("ws");
  const cp = await benchControlPlane(
    await pgs.database("local_box"),
    driver,
    {},
    { agentHeartbeatSeconds: 1 },
  );
  try {
    const owner = cp.deps.store.as(
      await upsertUser(cp.deps.store, LOCAL_OWNER_EXTERNAL_ID, { isAdmin: true }),
    );
    const { pool } = cp.deps.database;
    const full: number[] = [];
    const bare: number[] = [];
    let lastId = "";
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      const { workspace, build } = await cp.deps.workspaces.create(owner, { name: `ttr${i}` });
      for (;;) {
        const { rows } = await pool.query(
          "SELECT w.state, b.status FROM workspaces w, workspace_builds b WHERE w.id = $1 AND b.id = $2",
          [workspace.id, build.id],
        );
        if (rows[0].status === "failed") throw new Error("start build failed");
        if (rows[0].state === "ready") break;
        await new Promise((r) => setTimeout(r, 10));
      }
      full.push(performance.now() - t);
      // The same agent start without the control plane: stop it, then time a bare driver start.
      const spec = benchSpec(workspace.id, cp.url);
      await driver.apply(spec, "stop", QUIET, AbortSignal.timeout(30_000));
      const t2 = performance.now();
      await driver.apply(spec, "start", QUIET, AbortSignal.timeout(30_000));
      bare.push(performance.now() - t2);
      lastId = workspace.id;
      if (i < 4) {
        await driver.destroy(spec, QUIET);
        await pool.query("UPDATE workspaces SET state = 'destroyed' WHERE id = $1", [workspace.id]);
      }
    }
    table(
      "Local box time-to-ready (median of 5)",
      ["path", "ms", "vs baseline"],
      [
        ["bare agent start (baseline)", fmt(median(bare), 0), "1.00x"],
        ["API create -> ready", fmt(median(full), 0), `${fmt(median(full) / median(bare), 2)}x`],
      ],
    );

    // The last workspace runs a bare-started agent whose credential is the bench spec's.
    const state = JSON.parse(readFileSync(join(root, lastId, "run", "agent.json"), "utf8"));
    const n = 300;
    const floor = await wsEchoFloor(n);
    const echo = await measureEchoRoundTrip(
      { wsUrl: `ws://127.0.0.1:${state.terminalPort}/ws`, credential: BENCH_CREDENTIAL, session: "bench" },
      n,
    );
    table(
      `Keystroke echo round-trip (${n} keystrokes)`,
      ["path", "p50 ms", "p99 ms", "p50 vs baseline"],
      [
        ["plain WebSocket echo (baseline)", fmt(floor.p50, 3), fmt(floor.p99, 3), "1.00x"],
        [
          "built-in terminal server -> tmux -> shell",
          fmt(echo.p50, 3),
          fmt(echo.p99, 3),
          `${fmt(echo.p50 / floor.p50, 1)}x`,
        ],
      ],
    );
  } finally {
    for (const id of readdirSync(root)) await driver.destroy(benchSpec(id, cp.url), QUIET);
    await cp.close();
    rmSync(root, { recursive: true, force: true });
  }
}
