/**
 * The terminal relay's benchmark, for `npm run bench`: the same measurement through the relay and straight
 * to the box's terminal endpoint, in one run on loopback, and the ratio.
 *   1. keystroke echo round trip (p50/p99): one character typed until the shell's echo is on screen;
 *   2. bulk output through tmux: `cat` of a large file, MB/s of file until the marker after it shows up
 *      (tmux renders, so this is what a user sees, and tmux is usually the limit);
 *   3. raw relay throughput: a box endpoint that sends OUTPUT as fast as its socket allows, no tmux, so the
 *      relay's own cost shows.
 *   4. memory of 1,000 idle terminals, straight and relayed, both in this process: the difference is the
 *      relay's own heap per socket.
 * The box is a real local agent (local driver) with its built-in ttyd-protocol endpoint. Nothing asserts.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { WebSocket, WebSocketServer } from "ws";
import { TtydClient } from "../../../box/terminal/client.ts";
import {
  basicAuthHeader,
  encodeCredential,
  encodeInit,
  TTY_SUBPROTOCOL,
} from "../../../box/terminal/protocol.ts";
import type { WorkspaceSpec } from "../../../stacks/driver.ts";
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../../auth/actor.ts";
import {
  type BenchPostgres,
  benchControlPlane,
  benchLocalDriver,
  fmt,
  startNginxProxy,
  table,
} from "../../bench/harness.ts";
import { sessions, workspaceInstances, workspaces } from "../../db/schema.ts";
import { readWorkspaceSecret, storeWorkspaceSecrets } from "../../workspaces/secrets.ts";
import { TOKEN_PROTOCOL_PREFIX } from "./gateway.ts";
import { mintTerminalToken } from "./test-helpers.ts";

const QUIET = { stage() {}, line() {} };
const BENCH_TOKEN = "bench-token-bench-token-bench-token-bench";
// biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escape sequences are what is stripped
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\x1b./g;
const LETTERS = "abcdefghijklmnopqrstuvwxyz";

export interface EchoStats {
  samples: number;
  p50: number;
  p99: number;
}

function stats(times: number[]): EchoStats {
  const sorted = [...times].sort((a, b) => a - b);
  return { samples: sorted.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Runs a command and waits until its output shows: the shell is idle and the screen settled. */
async function settled(client: TtydClient, marker: string): Promise<void> {
  const nonce = `${marker}-${randomBytes(4).toString("hex")}`;
  const since = client.mark();
  client.type(`echo ${nonce}-$((6*7))\r`);
  await client.waitFor((out) => out.replace(ESCAPES, "").includes(`${nonce}-42`), { since });
}

/**
 * Keystroke echo latency over any connection (direct or relayed): one character, until it is on screen.
 * Returns each sample in milliseconds.
 */
export async function measureEcho(connect: () => Promise<TtydClient>, n: number): Promise<number[]> {
  const client = await connect();
  try {
    client.type("\x15");
    await settled(client, "bench-ready");
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      if (i > 0 && i % 40 === 0) {
        client.type("\x15"); // Ctrl-U: keep the line short so every echo is a plain append
        await settled(client, `bench-${i}`);
      }
      const ch = LETTERS[i % LETTERS.length]!;
      const since = client.mark();
      const start = performance.now();
      client.type(ch);
      await client.waitFor((out) => out.replace(ESCAPES, "").includes(ch), { since });
      times.push(performance.now() - start);
    }
    client.type("\x15");
    await settled(client, "bench-done");
    return times;
  } finally {
    await client.close();
  }
}

interface RawTarget {
  url: string;
  protocols: string[];
  headers: Record<string, string>;
  authToken: string;
}

/**
 * Opens a bare ttyd-protocol socket and counts OUTPUT bytes until `until` says stop; no string building,
 * so the client costs as little as possible. Returns the seconds from `start()` to the end.
 */
async function rawReceive(
  target: RawTarget,
  start: (ws: WebSocket) => void,
  until: (chunk: Buffer, total: number) => boolean,
): Promise<{ seconds: number; bytes: number }> {
  const ws = new WebSocket(target.url, target.protocols, {
    headers: target.headers,
    perMessageDeflate: false,
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  ws.send(encodeInit(target.authToken, { columns: 200, rows: 50 }));
  let bytes = 0;
  let t0 = 0;
  const seconds = await new Promise<number>((resolve, reject) => {
    ws.on("close", (code, reason) => reject(new Error(`closed: ${code} ${reason}`)));
    ws.on("message", (data: Buffer) => {
      if (data[0] !== 0x30 || t0 === 0) return;
      bytes += data.length - 1;
      if (until(data, bytes)) resolve((performance.now() - t0) / 1000);
    });
    // Title and preferences come first; start once they are in.
    setTimeout(() => {
      t0 = performance.now();
      start(ws);
    }, 300);
  });
  ws.removeAllListeners("close");
  ws.terminate();
  return { seconds, bytes };
}

/** A box endpoint without tmux: after the init it sends `total` bytes of OUTPUT as fast as its socket drains. */
async function blastEndpoint(credential: string, total: number) {
  const server = createServer();
  const wss = new WebSocketServer({
    server,
    handleProtocols: (p) => (p.has(TTY_SUBPROTOCOL) ? TTY_SUBPROTOCOL : false),
  });
  const chunk = Buffer.concat([Buffer.of(0x30), Buffer.alloc(64 * 1024, 0x78)]);
  wss.on("connection", (ws, req) => {
    if (req.headers.authorization !== basicAuthHeader(credential)) return ws.close(1008);
    ws.once("message", () => {
      ws.send(Buffer.from("1blast"));
      ws.send(Buffer.from("2{}"));
      ws.on("message", () => {
        let sent = 0;
        const pump = () => {
          while (sent < total && ws.readyState === ws.OPEN && ws.bufferedAmount < 1024 * 1024) {
            sent += chunk.length - 1;
            ws.send(chunk, { binary: true }, () => setImmediate(pump));
          }
        };
        pump();
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      wss.close();
      server.close();
    },
  };
}

const gc: () => void = (() => {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
})();

function heapNow(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/**
 * Opens `n` idle terminals (init sent, nothing else) and returns how much heap they hold once open.
 * `open` waits until `settledCount` (when given) reports all of them, e.g. the relay's socket count.
 */
async function idleHeap(
  n: number,
  target: () => Promise<RawTarget>,
  settledCount?: () => number,
): Promise<number> {
  const targets: RawTarget[] = [];
  for (let i = 0; i < n; i++) targets.push(await target()); // tokens are minted before the baseline
  const before = heapNow();
  const sockets: WebSocket[] = [];
  for (let i = 0; i < n; i += 50) {
    await Promise.all(
      targets.slice(i, i + 50).map(
        (t) =>
          new Promise<void>((resolve, reject) => {
            const ws = new WebSocket(t.url, t.protocols, { headers: t.headers, perMessageDeflate: false });
            sockets.push(ws);
            ws.once("error", reject);
            // Open once title and preferences arrived: the endpoint has the init, the relay both legs.
            let seen = 0;
            ws.on("message", () => {
              if (++seen === 2) resolve();
            });
            ws.once("open", () => ws.send(encodeInit(t.authToken, { columns: 80, rows: 24 })));
          }),
      ),
    );
  }
  if (settledCount && settledCount() < n)
    throw new Error(`only ${settledCount()} of ${n} sockets are relayed`);
  await new Promise((r) => setTimeout(r, 200));
  const held = heapNow() - before;
  for (const ws of sockets) ws.terminate();
  while (settledCount && settledCount() > 0) await new Promise((r) => setTimeout(r, 20));
  return held;
}

export async function benchTerminalRelay(pgs: BenchPostgres): Promise<void> {
  const { root, driver } = benchLocalDriver("term");
  const cp = await benchControlPlane(
    await pgs.database("terminal_relay"),
    driver,
    { BERTH_LOCAL_TOKEN: BENCH_TOKEN },
    {
      agentHeartbeatSeconds: 1,
      terminal: {
        socketRateLimit: { points: 10_000, durationSeconds: 60 },
        maxSocketsPerSession: 2_000,
        mintRateLimit: { points: 10_000, durationSeconds: 60 },
      },
    },
  );
  let blast: Awaited<ReturnType<typeof blastEndpoint>> | null = null;
  let nginx: Awaited<ReturnType<typeof startNginxProxy>> = null;
  try {
    const { db, pool } = cp.deps.database;
    const owner = await upsertUser(db, LOCAL_OWNER_EXTERNAL_ID, { isAdmin: true });
    const { workspace } = await cp.deps.workspaces.create(owner, { name: "bench-relay" });
    for (;;) {
      const { rows } = await pool.query("SELECT state FROM workspaces WHERE id = $1", [workspace.id]);
      if (rows[0].state === "ready") break;
      if (rows[0].state === "failed") throw new Error("the bench workspace failed to start");
      await new Promise((r) => setTimeout(r, 50));
    }
    const [session] = await db
      .insert(sessions)
      .values({ workspaceId: workspace.id, name: "bench", createdById: owner.userId })
      .returning();
    const credential = (await readWorkspaceSecret(db, cp.deps.secretBox, workspace.id, "ttyd-credential"))!;
    const { rows: inst } = await pool.query(
      "SELECT terminal_port FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
      [workspace.id],
    );
    const boxUrl = `ws://127.0.0.1:${inst[0].terminal_port}/ws`;
    const relayUrl = (sessionId: string) =>
      `${cp.url.replace(/^http/, "ws")}/api/v1/sessions/${sessionId}/terminal`;
    const origin = new URL(cp.url).origin;
    const token = async (sessionId: string) =>
      (await mintTerminalToken(cp.url, sessionId, BENCH_TOKEN)).token!;
    const direct = () =>
      TtydClient.connect({ url: boxUrl, session: "bench", credential, size: { columns: 200, rows: 50 } });
    // nginx in front of the same box endpoint, when installed: the proxy the relay should beat.
    nginx = await startNginxProxy(inst[0].terminal_port);
    const nginxUrl = nginx ? `ws://127.0.0.1:${nginx.port}/ws` : null;
    const viaNginx = () =>
      TtydClient.connect({ url: nginxUrl!, session: "bench", credential, size: { columns: 200, rows: 50 } });
    const relayed = async () =>
      TtydClient.connect({
        url: relayUrl(session!.id),
        protocols: ["tty", `${TOKEN_PROTOCOL_PREFIX}${await token(session!.id)}`],
        headers: { Origin: origin },
        authToken: "",
        size: { columns: 200, rows: 50 },
      });

    // 1. Echo.
    const n = 300;
    await measureEcho(direct, 20); // warm up tmux, the shell and both paths
    await measureEcho(relayed, 20);
    // Interleaved (direct, relay, relay, direct), so drift in tmux or the machine hits both paths alike.
    const directTimes: number[] = [];
    const relayTimes: number[] = [];
    const nginxTimes: number[] = [];
    if (nginx) await measureEcho(viaNginx, 20);
    for (const path of ["direct", "relay", "nginx", "nginx", "relay", "direct"] as const) {
      if (path === "direct") directTimes.push(...(await measureEcho(direct, n / 2)));
      else if (path === "relay") relayTimes.push(...(await measureEcho(relayed, n / 2)));
      else if (nginx) nginxTimes.push(...(await measureEcho(viaNginx, n / 2)));
    }
    const echoDirect = stats(directTimes);
    const echoRelay = stats(relayTimes);
    const echoNginx = nginx ? stats(nginxTimes) : null;
    table(
      `Terminal keystroke echo (${n} keystrokes per path, interleaved; tmux + shell on a local box)`,
      ["path", "p50 ms", "p99 ms", "p50 vs direct", "p99 vs direct"],
      [
        [
          "straight to the box endpoint (baseline)",
          fmt(echoDirect.p50, 3),
          fmt(echoDirect.p99, 3),
          "1.00x",
          "1.00x",
        ],
        [
          "through the relay",
          fmt(echoRelay.p50, 3),
          fmt(echoRelay.p99, 3),
          `${fmt(echoRelay.p50 / echoDirect.p50, 2)}x`,
          `${fmt(echoRelay.p99 / echoDirect.p99, 2)}x`,
        ],
        ...(echoNginx
          ? [
              [
                "through nginx (no auth, no token checks)",
                fmt(echoNginx.p50, 3),
                fmt(echoNginx.p99, 3),
                `${fmt(echoNginx.p50 / echoDirect.p50, 2)}x`,
                `${fmt(echoNginx.p99 / echoDirect.p99, 2)}x`,
              ],
            ]
          : []),
      ],
    );
    if (!nginx) console.log("  (nginx not on PATH: no nginx baseline; Debian package `nginx`)");

    // 2. Bulk output through tmux: cat of a 20 MB file (printable lines), then a marker.
    const fileBytes = 20 * 1024 * 1024;
    const line = `${"0123456789abcdefghijklmnopqrstuvwxyz".repeat(3)}\n`;
    writeFileSync(
      join(root, workspace.id, "volume/user/projects/bench-bulk.txt"),
      line.repeat(Math.ceil(fileBytes / line.length)),
    );
    const catOnce = async (target: RawTarget) => {
      const marker = Buffer.from(`bulk-done-${randomBytes(4).toString("hex")}-42`);
      let tail = Buffer.alloc(0);
      return rawReceive(
        target,
        (ws) =>
          ws.send(
            Buffer.from(`0clear; cat bench-bulk.txt; echo ${marker.toString().slice(0, -3)}-$((6*7))\r`),
          ),
        (chunk) => {
          const body = chunk.subarray(1);
          const found = Buffer.concat([tail, body]).includes(marker);
          tail = Buffer.from(body.subarray(Math.max(0, body.length - marker.length)));
          return found;
        },
      );
    };
    const directTarget = (): RawTarget => ({
      url: `${boxUrl}?arg=bench`,
      protocols: [TTY_SUBPROTOCOL],
      headers: { Authorization: basicAuthHeader(credential) },
      authToken: encodeCredential(credential),
    });
    const relayTarget = async (sessionId: string): Promise<RawTarget> => ({
      url: relayUrl(sessionId),
      protocols: [TTY_SUBPROTOCOL, `${TOKEN_PROTOCOL_PREFIX}${await token(sessionId)}`],
      headers: { Origin: origin },
      authToken: "",
    });
    const best = async (run: () => Promise<{ seconds: number; bytes: number }>, times = 3) => {
      let top = { seconds: Number.POSITIVE_INFINITY, bytes: 0 };
      for (let i = 0; i < times; i++) {
        const r = await run();
        if (r.seconds < top.seconds) top = r;
      }
      return top;
    };
    const bulkDirect = await best(() => catOnce(directTarget()));
    const bulkRelay = await best(async () => catOnce(await relayTarget(session!.id)));
    const bulkNginx = nginx
      ? await best(() => catOnce({ ...directTarget(), url: `ws://127.0.0.1:${nginx!.port}/ws?arg=bench` }))
      : null;
    const mbps = (bytes: number, s: number) => bytes / 1e6 / s;
    table(
      "Terminal bulk output through tmux: cat of a 20 MB file (best of 3; MB/s of file)",
      ["path", "seconds", "file MB/s", "wire MB", "speed vs direct"],
      [
        [
          "straight to the box endpoint (baseline)",
          fmt(bulkDirect.seconds, 2),
          fmt(mbps(fileBytes, bulkDirect.seconds)),
          fmt(bulkDirect.bytes / 1e6),
          "1.00x",
        ],
        [
          "through the relay",
          fmt(bulkRelay.seconds, 2),
          fmt(mbps(fileBytes, bulkRelay.seconds)),
          fmt(bulkRelay.bytes / 1e6),
          `${fmt(bulkDirect.seconds / bulkRelay.seconds, 2)}x`,
        ],
        ...(bulkNginx
          ? [
              [
                "through nginx",
                fmt(bulkNginx.seconds, 2),
                fmt(mbps(fileBytes, bulkNginx.seconds)),
                fmt(bulkNginx.bytes / 1e6),
                `${fmt(bulkDirect.seconds / bulkNginx.seconds, 2)}x`,
              ],
            ]
          : []),
      ],
    );

    // 3. Raw relay throughput: a box endpoint with no tmux behind it.
    const blastBytes = 200 * 1024 * 1024;
    const blastCredential = `berth:${randomBytes(12).toString("hex")}`;
    blast = await blastEndpoint(blastCredential, blastBytes);
    const [blastWs] = await db
      .insert(workspaces)
      .values({
        ownerId: owner.userId,
        name: "blast",
        state: "ready",
        driver: "local",
        location: "local",
        serverType: "local",
        volumeSizeGb: 10,
      })
      .returning();
    await db.insert(workspaceInstances).values({
      workspaceId: blastWs!.id,
      agentTokenHash: randomBytes(16).toString("hex"),
      publicIp: "127.0.0.1",
      terminalPort: blast.port,
    });
    await storeWorkspaceSecrets(db, cp.deps.secretBox, blastWs!.id, { "ttyd-credential": blastCredential });
    const [blastSession] = await db
      .insert(sessions)
      .values({ workspaceId: blastWs!.id, name: "blast", createdById: owner.userId })
      .returning();
    const blastOnce = (target: RawTarget) =>
      rawReceive(
        target,
        (ws) => ws.send(Buffer.from("0go")),
        (_chunk, total) => total >= blastBytes,
      );
    const rawDirect = await best(() =>
      blastOnce({
        url: `ws://127.0.0.1:${blast!.port}/ws?arg=blast`,
        protocols: [TTY_SUBPROTOCOL],
        headers: { Authorization: basicAuthHeader(blastCredential) },
        authToken: encodeCredential(blastCredential),
      }),
    );
    const rawRelay = await best(async () => blastOnce(await relayTarget(blastSession!.id)));
    table(
      "Terminal relay raw throughput: 200 MB of OUTPUT from a box endpoint without tmux (best of 3)",
      ["path", "seconds", "MB/s", "speed vs direct"],
      [
        [
          "straight to the endpoint (baseline)",
          fmt(rawDirect.seconds, 2),
          fmt(mbps(rawDirect.bytes, rawDirect.seconds)),
          "1.00x",
        ],
        [
          "through the relay",
          fmt(rawRelay.seconds, 2),
          fmt(mbps(rawRelay.bytes, rawRelay.seconds)),
          `${fmt(rawDirect.seconds / rawRelay.seconds, 2)}x`,
        ],
      ],
    );

    // 4. Memory of idle terminal sockets: the same 1,000 idle terminals straight to the endpoint and through
    // the relay, all in this process; the difference is what the relay itself holds per socket.
    const idleCount = 1_000;
    const direct1k = await idleHeap(idleCount, async () => ({
      url: `ws://127.0.0.1:${blast!.port}/ws?arg=blast`,
      protocols: [TTY_SUBPROTOCOL],
      headers: { Authorization: basicAuthHeader(blastCredential) },
      authToken: encodeCredential(blastCredential),
    }));
    const relayed1k = await idleHeap(
      idleCount,
      () => relayTarget(blastSession!.id),
      () => cp.deps.terminal.socketCount,
    );
    const perSocket = (bytes: number) => `${fmt(bytes / idleCount / 1024, 1)}`;
    table(
      `Memory of ${idleCount} idle terminal sockets (V8 heap + external after GC, this process)`,
      ["path", "MB total", "KiB per socket", "vs direct"],
      [
        [
          "straight to the endpoint: client + endpoint ends (baseline)",
          fmt(direct1k / 1e6),
          perSocket(direct1k),
          "1.00x",
        ],
        [
          "through the relay: client + relay (2 legs) + endpoint ends",
          fmt(relayed1k / 1e6),
          perSocket(relayed1k),
          `${fmt(relayed1k / direct1k, 2)}x`,
        ],
        [
          "the relay's own share (difference)",
          fmt((relayed1k - direct1k) / 1e6),
          perSocket(relayed1k - direct1k),
          "",
        ],
      ],
    );
  } finally {
    blast?.close();
    nginx?.stop();
    for (const id of readdirSync(root)) {
      const spec: WorkspaceSpec = {
        workspaceId: id,
        ownerId: "bench",
        location: "local",
        serverType: "local",
        volumeSizeGb: 10,
        controlPlaneUrl: cp.url,
        secrets: { agentToken: "bench", ttydCredential: "bench:bench", resticPassword: "bench" },
      };
      await driver.destroy(spec, QUIET).catch(() => {});
    }
    await cp.close();
    rmSync(root, { recursive: true, force: true });
  }
}
