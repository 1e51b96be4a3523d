/**
 * Preview proxy benchmark for `npm run bench`: requests/s and latency percentiles for a small and a 1 MB
 * response, straight to the dev server and through the control plane (path form with a Bearer token, host
 * form with the preview cookie), plus nginx as a reverse proxy when an `nginx` binary is on PATH. The dev
 * server and the control plane run in their own processes, like nginx, and autocannon in a worker thread
 * of this one. Figures are for this machine and this run: compare the ratios, not the numbers.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { request } from "node:http";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { SecretBox } from "../platform/secret-box.ts";
import { connectDatabase } from "../store/client.ts";
import { Store } from "../store/store.ts";
import { TEST_SECRET_KEYS } from "../test/keys.ts";
import { spawnBenchControlPlane } from "./control-plane-main.ts";
import type { BenchPostgres } from "./harness.ts";
import { fmt, startNginxProxy, table } from "./harness.ts";

const DOMAIN = "preview.localhost";
const BENCH_TOKEN = "bench-token-bench-token-bench-token-bench";

export interface PreviewBenchRow {
  body: "small" | "1MB";
  via: "direct" | "path form" | "host form" | "nginx";
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
}

export interface PreviewBenchOptions {
  databaseUrl: string;
  durationSeconds?: number;
  connections?: number;
}

async function load(
  url: string,
  headers: Record<string, string>,
  seconds: number,
  connections: number,
): Promise<autocannon.Result> {
  return autocannon({ url, headers, duration: seconds, connections, workers: 1 });
}

/** The dev server in its own process, so it does not share the control plane's event loop. */
async function spawnDevServer(): Promise<{ port: number; child: ChildProcess }> {
  const module = fileURLToPath(new URL("../test/dev-server.ts", import.meta.url));
  const child = spawn(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `const { startDevServer } = await import(${JSON.stringify(module)}); const s = await startDevServer(); console.log(s.port);`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once("exit", (code) => reject(new Error(`dev server exited (${code})`)));
  });
  return { port, child };
}

export async function runPreviewBench(opts: PreviewBenchOptions): Promise<PreviewBenchRow[]> {
  const seconds = opts.durationSeconds ?? 5;
  const connections = opts.connections ?? 32;
  const dev = await spawnDevServer();
  // The control plane in its own process, as in production and like nginx; autocannon runs here.
  const child = await spawnBenchControlPlane({
    databaseUrl: opts.databaseUrl,
    env: { BERTH_PREVIEW_DOMAIN: DOMAIN, BERTH_LOCAL_TOKEN: BENCH_TOKEN },
    options: { runBuilds: false },
  });
  const cp = { url: child.ready.url };
  const database = connectDatabase(opts.databaseUrl, { max: 2 });
  const nginx = await startNginxProxy(dev.port);
  try {
    const { pool } = database;
    const store = new Store(database, { secretBox: SecretBox.fromSpec(TEST_SECRET_KEYS) });
    await upsertUser(store, LOCAL_OWNER_EXTERNAL_ID, { isAdmin: true });
    const owner = await pool.query("SELECT id FROM users LIMIT 1");
    const ws = await pool.query(
      `INSERT INTO workspaces (owner_id, name, state, driver, location, server_type, volume_size_gb)
       VALUES ($1, 'bench', 'ready', 'local', 'l', 's', 10) RETURNING id`,
      [owner.rows[0].id],
    );
    const workspaceId: string = ws.rows[0].id;
    await pool.query(
      `INSERT INTO workspace_instances (workspace_id, public_ip, agent_token_hash, agent_lifecycle)
       VALUES ($1, '127.0.0.1', md5(random()::text), 'ready')`,
      [workspaceId],
    );
    const preview = await pool.query(
      "INSERT INTO previews (workspace_id, port, source) VALUES ($1, $2, 'declared') RETURNING id",
      [workspaceId, dev.port],
    );
    const previewId: string = preview.rows[0].id;
    const bearer = { authorization: `Bearer ${BENCH_TOKEN}` };

    // A host cookie the way a browser gets one: one-time code, then the redirect's Set-Cookie.
    const opened = (await (
      await fetch(`${cp.url}/api/v1/previews/${previewId}/open`, {
        method: "POST",
        headers: { ...bearer, "content-type": "application/json" },
        body: "{}",
      })
    ).json()) as { url: string };
    const code = new URL(opened.url);
    const cpPort = new URL(cp.url).port;
    const hostHeader = `${previewId}.${DOMAIN}:${cpPort}`;
    const signIn = await new Promise<string>((resolve, reject) => {
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

    const cases: Array<{ via: PreviewBenchRow["via"]; base: string; headers: Record<string, string> }> = [
      { via: "direct", base: `http://127.0.0.1:${dev.port}`, headers: {} },
      { via: "path form", base: `${cp.url}/api/v1/previews/${previewId}`, headers: bearer },
      { via: "host form", base: cp.url, headers: { host: hostHeader, cookie: signIn } },
    ];
    if (nginx) cases.push({ via: "nginx", base: `http://127.0.0.1:${nginx.port}`, headers: {} });

    const rows: PreviewBenchRow[] = [];
    for (const [body, path] of [
      ["small", "/small"],
      ["1MB", "/mb"],
    ] as const) {
      for (const c of cases) {
        await load(`${c.base}${path}`, c.headers, 1, connections); // warm-up: connections, JIT, caches
        const r = await load(`${c.base}${path}`, c.headers, seconds, connections);
        rows.push({
          body,
          via: c.via,
          requestsPerSecond: r.requests.average,
          p50Ms: r.latency.p50,
          p99Ms: r.latency.p99,
          errors: r.errors,
          non2xx: r.non2xx,
        });
      }
    }
    return rows;
  } finally {
    nginx?.stop();
    await child.stop();
    await database.close();
    dev.child.kill();
  }
}

/** The `npm run bench` section. */
export async function benchPreviewProxy(pgs: BenchPostgres): Promise<void> {
  const rows = await runPreviewBench({ databaseUrl: await pgs.database("preview") });
  const direct = (body: string) => rows.find((r) => r.body === body && r.via === "direct")!;
  table(
    "Preview proxy (32 connections, 5 s each; ratio = proxied req/s ÷ direct req/s)",
    ["body", "via", "req/s", "p50 ms", "p99 ms", "ratio", "errors"],
    rows.map((r) => [
      r.body,
      r.via,
      fmt(r.requestsPerSecond, 0),
      fmt(r.p50Ms),
      fmt(r.p99Ms),
      fmt(r.requestsPerSecond / direct(r.body).requestsPerSecond, 2),
      r.errors + r.non2xx,
    ]),
  );
  if (!rows.some((r) => r.via === "nginx"))
    console.log("  (nginx not on PATH: no nginx baseline; Debian package `nginx`)");
}
