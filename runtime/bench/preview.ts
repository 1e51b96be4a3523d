/**
 * Preview proxy benchmark for `npm run bench`: requests/s and latency percentiles for a small and a 1 MB
 * response, straight to the dev server and through the control plane (path form with a Bearer token, host
 * form with the preview cookie), plus nginx as a reverse proxy when an `nginx` binary is on PATH. The dev
 * server and the control plane run in their own processes, like nginx, and autocannon on the main thread
 * of this one. Figures are for this machine and this run: compare the ratios, not the numbers.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { request } from "node:http";
import { createHistogram } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { SecretBox } from "../platform/secret-box.ts";
import { connectDatabase } from "../store/client.ts";
import { freePort } from "../store/embedded.ts";
import { Store } from "../store/store.ts";
import { TEST_SECRET_KEYS } from "../test/keys.ts";
import { spawnBenchControlPlane } from "./control-plane-main.ts";
import type { BenchPostgres } from "./harness.ts";
import { cpuSeconds, fmt, inRotatingOrder, median, startNginxProxy, table } from "./harness.ts";

const DOMAIN = "preview.localhost";
/** Each case's measuring time is split into this many rounds that alternate with the other cases'. */
const ROUNDS = 5;

const BENCH_TOKEN = "bench-token-bench-token-bench-token-bench";

export interface PreviewBenchRow {
  body: "small" | "1MB";
  via: "direct" | "path form" | "host form" | "bare relay" | "bare relay in the control plane" | "nginx";
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU time (user + system) the serving process(es) spent per request: the dev server's for direct. */
  cpuUsPerRequest: number;
  errors: number;
  non2xx: number;
}

export interface PreviewBenchOptions {
  databaseUrl: string;
  /** Measuring time per case, split into rounds (default 10 s: 5 rounds of 2 s). */
  durationSeconds?: number;
  connections?: number;
  /** Control-plane processes sharing one port (BERTH_WORKERS), and nginx's worker_processes alike. */
  processes?: number;
  /** Only these routes and bodies (all by default): a profile of one case. */
  only?: { via?: PreviewBenchRow["via"][]; body?: PreviewBenchRow["body"][] };
}

/** One round of load: autocannon's result, and its 2xx responses' latency percentiles to the microsecond. */
interface Round {
  result: autocannon.Result;
  p50Ms: number;
  p99Ms: number;
}

async function load(
  url: string,
  headers: Record<string, string>,
  seconds: number,
  connections: number,
): Promise<Round> {
  // autocannon's own latency histogram keeps whole milliseconds, and a small request through a proxy takes
  // 1-5 ms here: its p99 moved in steps of 20-30 %, and a p99 ratio of 4 ms to 3 ms read as 1.33x whatever
  // the times were. Each response's time as autocannon measures it (a float, from hrtime) goes into a
  // nanosecond histogram instead. autocannon runs on this process's main thread, which has nothing else to
  // do meanwhile (its per-response events do not cross from a worker).
  const latencies = createHistogram();
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({ url, headers, duration: seconds, connections }, (err, done) =>
      err ? reject(err) : resolve(done),
    );
    instance.on("response", (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) latencies.record(Math.max(1, Math.round(ms * 1e6)));
    });
  });
  return { result, p50Ms: latencies.percentile(50) / 1e6, p99Ms: latencies.percentile(99) / 1e6 };
}

/** A Node process started with `args` that prints the port it listens on, as its first line. */
export async function spawnPortPrinter(
  what: string,
  args: string[],
): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once("exit", (code) => reject(new Error(`${what} exited (${code})`)));
  });
  return { port, child };
}

/** The dev server in its own process, so it does not share the control plane's event loop. */
function spawnDevServer(): Promise<{ port: number; child: ChildProcess }> {
  const module = fileURLToPath(new URL("../test/dev-server.ts", import.meta.url));
  return spawnPortPrinter("dev server", [
    "--input-type=module",
    "-e",
    `const { startDevServer } = await import(${JSON.stringify(module)}); const s = await startDevServer(); console.log(s.port);`,
  ]);
}

/** The bare byte relay (bare-proxy.ts) in front of `upstreamPort`, in its own process. */
function spawnBareProxy(upstreamPort: number): Promise<{ port: number; child: ChildProcess }> {
  const module = fileURLToPath(new URL("./bare-proxy.ts", import.meta.url));
  return spawnPortPrinter("bare proxy", [module, String(upstreamPort)]);
}

/** A preview of a loopback dev server, opened the way a browser opens one, on a running control plane. */
export interface BenchPreview {
  previewId: string;
  /** The control plane's URL. */
  url: string;
  /** `<previewId>.preview.localhost:<port>`: the host form's Host header. */
  hostHeader: string;
  /** The host form's cookie (`name=value`), from the sign-in redirect. */
  cookie: string;
  /** The API's Bearer header (local mode's token): the path form's credential. */
  bearer: Record<string, string>;
  /** A new one-time sign-in URL of the host form (`http://<hostHeader>/__berth/auth?code=…`), as the UI opens. */
  signInUrl(): Promise<string>;
}

/**
 * A control plane in its own process (as in production and like nginx) with a preview of `devPort`.
 * `processes` > 1 starts that many replicas on one port (BERTH_WORKERS: SO_REUSEPORT, one database).
 */
export async function startBenchPreview(
  databaseUrl: string,
  devPort: number,
  options: { processes?: number } = {},
): Promise<BenchPreview & { pids: number[]; ask(question: string): Promise<number>; stop(): Promise<void> }> {
  const processes = options.processes ?? 1;
  const shared: Record<string, string> =
    processes > 1 ? { BERTH_WORKERS: String(processes), BERTH_PORT: String(await freePort()) } : {};
  const children: Array<Awaited<ReturnType<typeof spawnBenchControlPlane>>> = [];
  const database = connectDatabase(databaseUrl, { max: 2 });
  const stop = async () => {
    await Promise.all(children.map((c) => c.stop()));
    await database.close();
  };
  try {
    // One after the other: the first runs the migrations the others then find applied.
    for (let i = 0; i < processes; i++) {
      children.push(
        await spawnBenchControlPlane({
          databaseUrl,
          env: { BERTH_PREVIEW_DOMAIN: DOMAIN, BERTH_LOCAL_TOKEN: BENCH_TOKEN, ...shared },
          options: { runBuilds: false },
        }),
      );
    }
    const preview = await createPreview(children[0]!.ready.url, database, devPort);
    return { ...preview, pids: children.map((c) => c.pid), ask: (q) => children[0]!.ask(q), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function createPreview(
  url: string,
  database: ReturnType<typeof connectDatabase>,
  devPort: number,
): Promise<BenchPreview> {
  const { pool } = database;
  const store = new Store(database, { secretBox: SecretBox.fromSpec(TEST_SECRET_KEYS) });
  await upsertUser(store, LOCAL_OWNER_EXTERNAL_ID, { isAdmin: true });
  const owner = await pool.query("SELECT id FROM users LIMIT 1");
  const ws = await pool.query(
    `INSERT INTO workspaces (owner_id, name, state, driver, location, server_type, volume_size_gb)
     VALUES ($1, $2, 'ready', 'local', 'l', 's', 10) RETURNING id`,
    [owner.rows[0].id, `bench-${devPort}`],
  );
  const workspaceId: string = ws.rows[0].id;
  await pool.query(
    `INSERT INTO workspace_instances (workspace_id, public_ip, agent_token_hash, agent_lifecycle)
     VALUES ($1, '127.0.0.1', md5(random()::text), 'ready')`,
    [workspaceId],
  );
  const preview = await pool.query(
    "INSERT INTO previews (workspace_id, port, source) VALUES ($1, $2, 'declared') RETURNING id",
    [workspaceId, devPort],
  );
  const previewId: string = preview.rows[0].id;
  const bearer = { authorization: `Bearer ${BENCH_TOKEN}` };

  const cpPort = new URL(url).port;
  const hostHeader = `${previewId}.${DOMAIN}:${cpPort}`;
  const signInUrl = async () => {
    const opened = (await (
      await fetch(`${url}/api/v1/previews/${previewId}/open`, {
        method: "POST",
        headers: { ...bearer, "content-type": "application/json" },
        body: "{}",
      })
    ).json()) as { url: string };
    const code = new URL(opened.url);
    return `http://${hostHeader}${code.pathname}${code.search}`;
  };
  // A host cookie the way a browser gets one: one-time code, then the redirect's Set-Cookie.
  const code = new URL(await signInUrl());
  const cookie = await new Promise<string>((resolve, reject) => {
    request(
      {
        host: "127.0.0.1",
        port: cpPort,
        path: `${code.pathname}${code.search}`,
        headers: { host: hostHeader },
      },
      (res) => {
        res.resume();
        resolve(String(res.headers["set-cookie"]).split(";", 1)[0]!);
      },
    )
      .on("error", reject)
      .end();
  });
  return { previewId, url, hostHeader, cookie, bearer, signInUrl };
}

export async function runPreviewBench(opts: PreviewBenchOptions): Promise<PreviewBenchRow[]> {
  const seconds = opts.durationSeconds ?? 10;
  const connections = opts.connections ?? 32;
  const dev = await spawnDevServer();
  const processes = opts.processes ?? 1;
  const nginx = await startNginxProxy(dev.port, { workers: processes });
  const bare = processes === 1 ? await spawnBareProxy(dev.port) : undefined;
  let cp: Awaited<ReturnType<typeof startBenchPreview>> | undefined;
  try {
    cp = await startBenchPreview(opts.databaseUrl, dev.port, { processes });
    const { previewId, bearer, hostHeader } = cp;
    const signIn = cp.cookie;

    const cases: Array<{
      via: PreviewBenchRow["via"];
      base: string;
      headers: Record<string, string>;
      pids: number[];
    }> = [
      { via: "direct", base: `http://127.0.0.1:${dev.port}`, headers: {}, pids: [dev.child.pid!] },
      { via: "path form", base: `${cp.url}/api/v1/previews/${previewId}`, headers: bearer, pids: cp.pids },
      { via: "host form", base: cp.url, headers: { host: hostHeader, cookie: signIn }, pids: cp.pids },
    ];
    if (bare) {
      cases.push({
        via: "bare relay",
        base: `http://127.0.0.1:${bare.port}`,
        headers: {},
        pids: [bare.child.pid!],
      });
      // The same relay inside the control plane's process: what sharing that process (its heap, its other
      // work) costs, apart from what Berth's own work on a request costs.
      const inProcess = await cp.ask(`bareRelayTo:${dev.port}`);
      cases.push({
        via: "bare relay in the control plane",
        base: `http://127.0.0.1:${inProcess}`,
        headers: {},
        pids: cp.pids,
      });
    }
    if (nginx)
      cases.push({ via: "nginx", base: `http://127.0.0.1:${nginx.port}`, headers: {}, pids: [nginx.pid] });

    // Rounds take turns in rotating order, so a noisy moment on a shared machine (other processes, other
    // tests) lands on all cases alike instead of on whichever case happened to run then; the median round
    // leaves out what is left of it.
    const rows: PreviewBenchRow[] = [];
    const roundSeconds = Math.max(1, Math.round(seconds / ROUNDS));
    for (const [body, path] of [
      ["small", "/small"],
      ["1MB", "/mb"],
    ] as const) {
      if (opts.only?.body && !opts.only.body.includes(body)) continue;
      const active = cases.filter((c) => !opts.only?.via || opts.only.via.includes(c.via));
      // Warm-up: connections, JIT, caches.
      for (const c of active) await load(`${c.base}${path}`, c.headers, 1, connections);
      const results = new Map<string, Round[]>(active.map((c) => [c.via, []]));
      const cpu = new Map<string, number>(active.map((c) => [c.via, 0]));
      for (const c of inRotatingOrder(active, ROUNDS)) {
        const before = cpuSeconds(c.pids);
        results.get(c.via)!.push(await load(`${c.base}${path}`, c.headers, roundSeconds, connections));
        cpu.set(c.via, cpu.get(c.via)! + cpuSeconds(c.pids) - before);
      }
      for (const c of active) {
        const rounds = results.get(c.via)!;
        const rs = rounds.map((r) => r.result);
        rows.push({
          body,
          via: c.via,
          requestsPerSecond: median(rs.map((x) => x.requests.average)),
          p50Ms: median(rounds.map((r) => r.p50Ms)),
          p99Ms: median(rounds.map((r) => r.p99Ms)),
          cpuUsPerRequest:
            (cpu.get(c.via)! * 1e6) /
            Math.max(
              1,
              rs.reduce((sum, x) => sum + x.requests.total, 0),
            ),
          errors: rs.reduce((sum, x) => sum + x.errors, 0),
          non2xx: rs.reduce((sum, x) => sum + x.non2xx, 0),
        });
      }
    }
    return rows;
  } finally {
    nginx?.stop();
    bare?.child.kill();
    await cp?.stop();
    dev.child.kill();
  }
}

function printRows(title: string, rows: PreviewBenchRow[]): void {
  const direct = (body: string) => rows.find((r) => r.body === body && r.via === "direct")!;
  const nginx = (body: string) => rows.find((r) => r.body === body && r.via === "nginx");
  table(
    title,
    [
      "body",
      "via",
      "req/s",
      "p50 ms",
      "p99 ms",
      "÷ direct",
      "÷ nginx",
      "p99 ÷ nginx",
      "CPU µs/req",
      "errors",
    ],
    rows.map((r) => [
      r.body,
      r.via,
      fmt(r.requestsPerSecond, 0),
      fmt(r.p50Ms, 2),
      fmt(r.p99Ms, 2),
      fmt(r.requestsPerSecond / direct(r.body).requestsPerSecond, 2),
      nginx(r.body) ? fmt(r.requestsPerSecond / nginx(r.body)!.requestsPerSecond, 2) : "-",
      nginx(r.body) ? fmt(r.p99Ms / nginx(r.body)!.p99Ms, 2) : "-",
      fmt(r.cpuUsPerRequest, 0),
      r.errors + r.non2xx,
    ]),
  );
}

/** The `npm run bench` section. */
export async function benchPreviewProxy(pgs: BenchPostgres): Promise<void> {
  const rows = await runPreviewBench({ databaseUrl: await pgs.database("preview") });
  printRows(
    "Preview proxy (32 connections; per case 1 s warm-up, then 5 rounds of 2 s in rotating order: median req/s, p50 and p99 over the rounds; one control-plane process, nginx worker_processes 1)",
    rows,
  );
  if (!rows.some((r) => r.via === "nginx"))
    console.log("  (nginx not on PATH: no nginx baseline; Debian package `nginx`)");
  // Two processes on one port against nginx with two workers. On a 2-core machine the load generator and
  // the dev server share those cores too: this shows whether a second process adds or only contends.
  const two = await runPreviewBench({
    databaseUrl: await pgs.database("preview2"),
    processes: 2,
    only: { via: ["direct", "host form", "nginx"], body: ["small"] },
  });
  printRows(
    "Preview proxy, 2 processes (BERTH_WORKERS=2, SO_REUSEPORT) vs nginx worker_processes 2 — autocannon and the dev server share the same cores",
    two,
  );
}
