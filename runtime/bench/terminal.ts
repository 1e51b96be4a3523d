/**
 * The terminal relay's benchmark, for `npm run bench`: the same measurement through the relay and straight
 * to the box's terminal endpoint, in one run on loopback, and the ratio.
 *   1. keystroke echo round trip (p50/p99): one character typed until the shell's echo is on screen;
 *   2. bulk output through tmux: `cat` of a large file, MB/s of file until the marker after it shows up
 *      (tmux renders, so this is what a user sees, and tmux is usually the limit);
 *   3. raw relay throughput: a box endpoint that sends OUTPUT as fast as its socket allows, no tmux, so the
 *      relay's own cost shows.
 *   4. memory of 1,000 idle terminals: what the server process holding them gains, the box endpoint for
 *      sockets straight to it, the control plane for relayed ones.
 * The control plane and the raw endpoint run in their own processes, like nginx; the clients run here.
 * The box is a real local agent (local driver) with its built-in ttyd-protocol endpoint. Nothing asserts.
 */
import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { WebSocket } from "ws";
import { interleavedEchoTimes, summarizeEcho } from "../../box/bench/terminal.ts";
import { TtydClient } from "../../box/terminal/client.ts";
import {
  basicAuthHeader,
  encodeCredential,
  encodeInit,
  TTY_SUBPROTOCOL,
} from "../../box/terminal/protocol.ts";
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { TOKEN_PROTOCOL_PREFIX } from "../gateway/terminal/gateway.ts";
import { SecretBox } from "../platform/secret-box.ts";
import { connectDatabase } from "../store/client.ts";
import { sessions, workspaceInstances, workspaces } from "../store/schema.ts";
import { readWorkspaceSecret, storeWorkspaceSecrets } from "../store/secrets.ts";
import { Store } from "../store/store.ts";
import { TEST_SECRET_KEYS } from "../test/keys.ts";
import { mintTerminalToken } from "../test/terminal.ts";
import { spawnBlastEndpoint } from "./blast-endpoint.ts";
import type { BenchChild } from "./child-process.ts";
import { spawnBenchControlPlane } from "./control-plane-main.ts";
import {
  type BenchPostgres,
  benchLocalDriver,
  cpuSeconds,
  destroyBenchBoxes,
  fmt,
  inRotatingOrder,
  roundByRound,
  startNginxProxy,
  table,
} from "./harness.ts";
import { spawnTcpPipe } from "./tcp-pipe.ts";

const BENCH_TOKEN = "bench-token-bench-token-bench-token-bench";

interface RawTarget {
  url: string;
  protocols: string[];
  headers: Record<string, string>;
  authToken: string;
}

/** One timed receive: how long it took and the bytes on the wire. */
interface ReceiveRun {
  seconds: number;
  bytes: number;
}

/**
 * Opens a bare ttyd-protocol socket and counts OUTPUT bytes until `until` says stop; no string building,
 * so the client costs as little as possible. Returns the seconds from `start()` to the end.
 */
async function rawReceive(
  target: RawTarget,
  start: (ws: WebSocket) => void,
  until: (chunk: Buffer, total: number) => boolean,
): Promise<ReceiveRun> {
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

/**
 * Opens `n` idle terminals (init sent, nothing else) from this process and returns how much heap the
 * server process `holder` (the box endpoint, or the control plane relaying) gained while they are open.
 * `settledCount` (when given) must report all of them, e.g. the relay's socket count.
 */
async function idleHeap(
  n: number,
  target: () => Promise<RawTarget>,
  holder: BenchChild<unknown>,
  settledCount?: () => Promise<number>,
): Promise<number> {
  const targets: RawTarget[] = [];
  for (let i = 0; i < n; i++) targets.push(await target()); // tokens are minted before the baseline
  const before = await holder.ask("heap");
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
  if (settledCount && (await settledCount()) < n)
    throw new Error(`only ${await settledCount()} of ${n} sockets are relayed`);
  await new Promise((r) => setTimeout(r, 200));
  const held = (await holder.ask("heap")) - before;
  for (const ws of sockets) ws.terminate();
  while (settledCount && (await settledCount()) > 0) await new Promise((r) => setTimeout(r, 20));
  return held;
}

export async function benchTerminalRelay(pgs: BenchPostgres): Promise<void> {
  const { root, driver } = benchLocalDriver("term");
  const databaseUrl = await pgs.database("terminal_relay");
  // The relay runs in its own process, as in production and as nginx does below.
  // The raw-throughput endpoint starts first: the control plane also runs a bare pipe to it in its own
  // process (section 3).
  const blastBytes = 200 * 1024 * 1024;
  const blastCredential = `berth:${randomBytes(12).toString("hex")}`;
  const blast = await spawnBlastEndpoint(blastCredential, blastBytes);
  const cp = await spawnBenchControlPlane({
    pipeUpstreamPort: blast.ready.port,
    databaseUrl,
    env: { BERTH_LOCAL_TOKEN: BENCH_TOKEN },
    localRoot: root,
    options: {
      agentHeartbeatSeconds: 1,
      terminal: {
        socketRateLimit: { points: 10_000, durationSeconds: 60 },
        maxSocketsPerSession: 2_000,
        mintRateLimit: { points: 10_000, durationSeconds: 60 },
      },
    },
  });
  const cpUrl = cp.ready.url;
  const database = connectDatabase(databaseUrl, { max: 2 });
  const secretBox = SecretBox.fromSpec(TEST_SECRET_KEYS);
  let nginx: Awaited<ReturnType<typeof startNginxProxy>> = null;
  let blastNginx: Awaited<ReturnType<typeof startNginxProxy>> = null;
  let pipe: BenchChild<{ port: number }> | null = null;
  let blastPipe: BenchChild<{ port: number }> | null = null;
  try {
    const { db, pool } = database;
    const owner = await upsertUser(new Store(database, { secretBox }), LOCAL_OWNER_EXTERNAL_ID, {
      isAdmin: true,
    });
    const created = await fetch(`${cpUrl}/api/v1/workspaces`, {
      method: "POST",
      headers: { authorization: `Bearer ${BENCH_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "bench-relay" }),
    });
    if (!created.ok) throw new Error(`bench workspace: HTTP ${created.status} ${await created.text()}`);
    const { workspace } = (await created.json()) as { workspace: { id: string } };
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
    const credential = (await readWorkspaceSecret(db, secretBox, workspace.id, "ttyd-credential"))!;
    const { rows: inst } = await pool.query(
      "SELECT terminal_port FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
      [workspace.id],
    );
    const boxUrl = `ws://127.0.0.1:${inst[0].terminal_port}/ws`;
    const relayUrl = (sessionId: string) =>
      `${cpUrl.replace(/^http/, "ws")}/api/v1/sessions/${sessionId}/terminal`;
    const origin = new URL(cpUrl).origin;
    const token = async (sessionId: string) =>
      (await mintTerminalToken(cpUrl, sessionId, BENCH_TOKEN)).token!;
    // nginx in front of the same box endpoint, when installed: the proxy the relay should beat.
    nginx = await startNginxProxy(inst[0].terminal_port);
    // A bare Node TCP pipe in front of the same endpoint: what one more Node process hop costs at least.
    pipe = await spawnTcpPipe(inst[0].terminal_port);
    // The same pipe inside the control plane's process: what sharing that process costs, apart from the relay.
    const cpPipePort = await cp.ask(`pipeTo:${inst[0].terminal_port}`);

    // 1. Echo. Through tmux a keystroke's round trip is mostly the shell and tmux, and it drifts with them
    // and with the machine by more than the paths differ: every path has a terminal open, each on a tmux
    // session of its own, and they take turns keystroke by keystroke, so the drift lands on all alike.
    const size = { columns: 200, rows: 50 };
    const attach = (port: number | string, name: string) => () =>
      TtydClient.connect({ url: `ws://127.0.0.1:${port}/ws`, session: name, credential, size });
    // Sessions the box knows of (it ends tmux sessions that are not in the database).
    const echoNames = ["echo-direct", "echo-relay", "echo-pipe", "echo-cp-pipe", "echo-nginx"];
    const echoSession = (
      await db
        .insert(sessions)
        .values(echoNames.map((name) => ({ workspaceId: workspace.id, name, createdById: owner.userId })))
        .returning()
    ).find((s) => s.name === "echo-relay");
    const relayed = async () =>
      TtydClient.connect({
        url: relayUrl(echoSession!.id),
        protocols: ["tty", `${TOKEN_PROTOCOL_PREFIX}${await token(echoSession!.id)}`],
        headers: { Origin: origin },
        authToken: "",
        size,
      });
    const keystrokes = 1000;
    const paths: Array<{ label: string; connect: () => Promise<TtydClient> }> = [
      {
        label: "straight to the box endpoint (baseline)",
        connect: attach(inst[0].terminal_port, "echo-direct"),
      },
      { label: "through the relay", connect: relayed },
      {
        label: "through a bare Node TCP pipe (no WebSocket, no checks)",
        connect: attach(pipe.ready.port, "echo-pipe"),
      },
      {
        label: "through a bare Node TCP pipe inside the control plane's process",
        connect: attach(cpPipePort, "echo-cp-pipe"),
      },
      ...(nginx
        ? [{ label: "through nginx (no auth, no token checks)", connect: attach(nginx.port, "echo-nginx") }]
        : []),
    ];
    const terminals: TtydClient[] = [];
    let echoTimes: number[][];
    try {
      for (const p of paths) terminals.push(await p.connect());
      await interleavedEchoTimes(terminals, 20); // warm up tmux, the shells and every path
      echoTimes = await interleavedEchoTimes(terminals, keystrokes);
    } finally {
      await Promise.all(terminals.map((t) => t.close()));
    }
    const echo = echoTimes.map(summarizeEcho);
    const [echoDirect, , echoPipe, , echoNginx] = echo;
    table(
      `Terminal keystroke echo (${keystrokes} keystrokes per path, the paths taking turns keystroke by keystroke; tmux + shell on a local box)`,
      ["path", "p50 ms", "p99 ms", "p50 ÷ direct", "p50 ÷ pipe", "p50 ÷ nginx", "p99 ÷ direct"],
      paths.map((p, i) => {
        const e = echo[i]!;
        return [
          p.label,
          fmt(e.p50, 3),
          fmt(e.p99, 3),
          `${fmt(e.p50 / echoDirect!.p50, 2)}x`,
          `${fmt(e.p50 / echoPipe!.p50, 2)}x`,
          echoNginx ? `${fmt(e.p50 / echoNginx.p50, 2)}x` : "-",
          `${fmt(e.p99 / echoDirect!.p99, 2)}x`,
        ];
      }),
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
    // Each path `rounds` times, the paths taking turns in rotating order, so that drift on the machine lands
    // on every path alike: each path's runs.
    const inTurns = async <T>(runs: Array<() => Promise<T>>, rounds: number): Promise<T[][]> => {
      const results: T[][] = runs.map(() => []);
      for (const i of inRotatingOrder(
        runs.map((_, i) => i),
        rounds,
      ))
        results[i]!.push(await runs[i]!());
      return results;
    };
    const bySeconds = <T extends { seconds: number }>(runs: T[]) =>
      [...runs].sort((a, b) => a.seconds - b.seconds);
    // Through tmux one run's time moves by ±25 % (tmux skips drawing what a client falls behind on, so the
    // work itself changes from run to run): each path's median run of many, after one run each to warm up.
    const catRuns = [
      () => catOnce(directTarget()),
      async () => catOnce(await relayTarget(session!.id)),
      ...(nginx
        ? [() => catOnce({ ...directTarget(), url: `ws://127.0.0.1:${nginx!.port}/ws?arg=bench` })]
        : []),
    ];
    const catRounds = 15;
    await inTurns(catRuns, 1);
    const catByPath = await inTurns(catRuns, catRounds);
    const [bulkDirect, bulkRelay, bulkNginx] = catByPath.map((runs) => bySeconds(runs)[runs.length >> 1]!);
    const mbps = (bytes: number, s: number) => bytes / 1e6 / s;
    const bulkRow = (label: string, r: ReceiveRun) => [
      label,
      fmt(r.seconds, 2),
      fmt(mbps(fileBytes, r.seconds)),
      fmt(r.bytes / 1e6),
      `${fmt(bulkDirect!.seconds / r.seconds, 2)}x`,
      bulkNginx ? `${fmt(bulkNginx.seconds / r.seconds, 2)}x` : "-",
    ];
    table(
      `Terminal bulk output through tmux: cat of a 20 MB file (median of ${catRounds} rounds, rotating order; MB/s of file)`,
      ["path", "seconds", "file MB/s", "wire MB", "speed ÷ direct", "speed ÷ nginx"],
      [
        bulkRow("straight to the box endpoint (baseline)", bulkDirect!),
        bulkRow("through the relay", bulkRelay!),
        ...(bulkNginx ? [bulkRow("through nginx", bulkNginx)] : []),
      ],
    );
    if (bulkNginx) {
      // The same comparison round by round: the paths of one round ran back to back, so a slow stretch of
      // the machine lands on all of them, and the spread shows how far one round's ratio can be trusted.
      const [direct, relay, viaNginx] = catByPath as [ReceiveRun[], ReceiveRun[], ReceiveRun[]];
      const perRound = (runs: ReceiveRun[]) =>
        roundByRound(runs.map((r, i) => viaNginx[i]!.seconds / r.seconds));
      console.log(
        `  speed ÷ nginx round by round: through the relay ${perRound(relay)}; straight ${perRound(direct)}`,
      );
    }

    // 3. Raw relay throughput: a box endpoint with no tmux behind it.
    const blastPort = blast.ready.port;
    blastNginx = await startNginxProxy(blastPort);
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
      terminalPort: blastPort,
    });
    await storeWorkspaceSecrets(db, secretBox, blastWs!.id, { "ttyd-credential": blastCredential });
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
    const blastDirectTarget = (port: number): RawTarget => ({
      url: `ws://127.0.0.1:${port}/ws?arg=blast`,
      protocols: [TTY_SUBPROTOCOL],
      headers: { Authorization: basicAuthHeader(blastCredential) },
      authToken: encodeCredential(blastCredential),
    });
    // CPU time of the process in the middle, per run: on a loaded machine, where MB/s drifts with the
    // neighbours, what each byte costs the relay's process still shows.
    const withCpu = (run: () => Promise<ReceiveRun>, cpuMsOf?: () => Promise<number>) => async () => {
      const before = cpuMsOf ? await cpuMsOf() : 0;
      const r = await run();
      return { ...r, cpu: cpuMsOf ? (await cpuMsOf()) - before : null };
    };
    const askCpuMs = (child: BenchChild<unknown>) => () => child.ask("cpuMs");
    blastPipe = await spawnTcpPipe(blastPort);
    // Without tmux the paths are steady: each one's fastest run, and its least CPU time.
    const [rawDirect, rawRelay, rawPipe, rawCpPipe, rawNginx] = (
      await inTurns(
        [
          withCpu(() => blastOnce(blastDirectTarget(blastPort))),
          withCpu(async () => blastOnce(await relayTarget(blastSession!.id)), askCpuMs(cp)),
          withCpu(() => blastOnce(blastDirectTarget(blastPipe!.ready.port)), askCpuMs(blastPipe)),
          withCpu(() => blastOnce(blastDirectTarget(cp.ready.pipePort!)), askCpuMs(cp)),
          ...(blastNginx
            ? [
                withCpu(
                  () => blastOnce(blastDirectTarget(blastNginx!.port)),
                  async () => cpuSeconds([blastNginx!.pid]) * 1000,
                ),
              ]
            : []),
        ],
        5,
      )
    ).map((runs) => ({
      ...bySeconds(runs)[0]!,
      cpu: runs[0]!.cpu === null ? null : Math.min(...runs.map((r) => r.cpu!)),
    }));
    const rawRow = (label: string, r: ReceiveRun & { cpu: number | null }) => [
      label,
      fmt(r.seconds, 2),
      fmt(mbps(r.bytes, r.seconds)),
      `${fmt(rawDirect!.seconds / r.seconds, 2)}x`,
      rawNginx ? `${fmt(rawNginx.seconds / r.seconds, 2)}x` : "-",
      r.cpu === null ? "-" : fmt(r.cpu, 0),
    ];
    table(
      "Terminal relay raw throughput: 200 MB of OUTPUT from a box endpoint without tmux (fastest of 5 rounds, rotating order)",
      ["path", "seconds", "MB/s", "speed ÷ direct", "speed ÷ nginx", "CPU ms of the middle process (least)"],
      [
        rawRow("straight to the endpoint (baseline)", rawDirect!),
        rawRow("through the relay", rawRelay!),
        rawRow("through a bare Node TCP pipe", rawPipe!),
        rawRow("through a bare Node TCP pipe inside the control plane's process", rawCpPipe!),
        ...(rawNginx ? [rawRow("through nginx", rawNginx)] : []),
      ],
    );

    // 4. Memory of idle terminal sockets: what the server process holding them gains per socket. The box
    // endpoint holds one WebSocket end per terminal; the relay two (client leg and upstream leg) plus its
    // bookkeeping, so about twice the endpoint's figure is the floor.
    const idleCount = 1_000;
    const endpointHeld = await idleHeap(idleCount, async () => blastDirectTarget(blastPort), blast);
    const relayHeld = await idleHeap(
      idleCount,
      () => relayTarget(blastSession!.id),
      cp,
      () => cp.ask("terminalSockets"),
    );
    const perSocket = (bytes: number) => `${fmt(bytes / idleCount / 1024, 1)}`;
    table(
      `Memory of ${idleCount} idle terminal sockets (V8 heap + external gained after GC, server process)`,
      ["server process", "MB total", "KiB per socket", "vs endpoint"],
      [
        [
          "the box endpoint, sockets straight to it (baseline)",
          fmt(endpointHeld / 1e6),
          perSocket(endpointHeld),
          "1.00x",
        ],
        [
          "the control plane, relaying them (2 legs each)",
          fmt(relayHeld / 1e6),
          perSocket(relayHeld),
          `${fmt(relayHeld / endpointHeld, 2)}x`,
        ],
      ],
    );
  } finally {
    await blast.stop();
    await pipe?.stop();
    await blastPipe?.stop();
    nginx?.stop();
    blastNginx?.stop();
    await destroyBenchBoxes(driver, root, cpUrl);
    await cp.stop();
    await database.close();
    rmSync(root, { recursive: true, force: true });
  }
}
