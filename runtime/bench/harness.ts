/** Shared pieces for `npm run bench`: a private Postgres, quiet control planes, and result printing. */
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { commandRuns } from "../../box/testing/command-runs.ts";
import type { WorkspaceDriver, WorkspaceSpec } from "../../stacks/driver.ts";
import { LocalDriver } from "../../stacks/local/driver.ts";
import { AGENT_ENTRY } from "../app/drivers.ts";
import { type ControlPlane, type StartOptions, startControlPlane } from "../app/server.ts";
import { loadConfig } from "../platform/config.ts";
import { createLogger } from "../platform/logger.ts";
import { freePort, startEmbeddedPostgres } from "../store/embedded.ts";
import { TEST_SECRET_KEYS } from "../test/keys.ts";

export interface BenchPostgres {
  /** A new empty database on the bench server. */
  database(name: string): Promise<string>;
  stop(): Promise<void>;
}

export async function benchPostgres(): Promise<BenchPostgres> {
  let adminUrl = process.env.TEST_DATABASE_URL;
  let stop = async () => {};
  if (!adminUrl) {
    const dir = mkdtempSync(join(tmpdir(), "berth-bench-pg-"));
    chmodSync(dir, 0o755);
    const embedded = await startEmbeddedPostgres(join(dir, "cluster"));
    adminUrl = embedded.url;
    stop = async () => {
      await embedded.stop();
      rmSync(dir, { recursive: true, force: true });
    };
  }
  const admin = adminUrl;
  const created: string[] = [];
  return {
    async database(name) {
      const full = `berth_bench_${name}_${process.pid}`;
      const c = new pg.Client(admin);
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${full}" WITH (FORCE)`);
      await c.query(`CREATE DATABASE "${full}"`);
      await c.end();
      created.push(full);
      const u = new URL(admin);
      u.pathname = `/${full}`;
      return u.toString();
    },
    async stop() {
      const c = new pg.Client(admin);
      await c.connect();
      for (const db of created) await c.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`).catch(() => {});
      await c.end();
      await stop();
    },
  };
}

export async function benchControlPlane(
  databaseUrl: string,
  driver: WorkspaceDriver,
  env: Record<string, string> = {},
  options: StartOptions = {},
): Promise<ControlPlane> {
  const dataDir = mkdtempSync(join(tmpdir(), "berth-bench-cp-"));
  const config = loadConfig({
    DATABASE_URL: databaseUrl,
    BERTH_PORT: "0",
    BERTH_DATA_DIR: dataDir,
    BERTH_SECRET_KEYS: TEST_SECRET_KEYS,
    BERTH_LOCAL_TOKEN: "bench-token-bench-token-bench-token-bench",
    BERTH_MAX_WORKSPACES_PER_USER: "1000",
    ...env,
  });
  // Its data dir (the generated keys) goes with it, whether it starts or not.
  const removeDataDir = () => rmSync(dataDir, { recursive: true, force: true });
  const cp = await startControlPlane(config, {
    driver,
    logger: createLogger("silent"),
    runSchedules: false,
    ...options,
  }).catch((err: unknown) => {
    removeDataDir();
    throw err;
  });
  return {
    ...cp,
    close: () => cp.close().finally(removeDataDir),
  };
}

export function table(title: string, header: string[], rows: Array<Array<string | number>>): void {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  console.log(`\n${title}`);
  for (const [i, r] of cells.entries()) {
    console.log(`  ${r.map((c, j) => c.padEnd(widths[j]!)).join("  ")}`);
    if (i === 0) console.log(`  ${widths.map((w) => "-".repeat(w)).join("  ")}`);
  }
}

export const fmt = (n: number, digits = 1) => n.toFixed(digits);

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on Linux). */
const TICKS_PER_SECOND = 100;

/**
 * CPU seconds (user + system) used so far by these processes and their children (nginx's workers, say),
 * from /proc. Unlike requests per second, CPU per request barely moves when other processes compete for the
 * cores, so it compares servers fairly on a busy machine. 0 where /proc is not Linux's.
 */
export function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  const seen = new Set<number>();
  const visit = (pid: number) => {
    if (seen.has(pid)) return;
    seen.add(pid);
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
      for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ")) {
        if (child.trim()) visit(Number(child));
      }
    } catch {
      // gone, or not Linux
    }
  };
  for (const pid of pids) visit(pid);
  return ticks / TICKS_PER_SECOND;
}

/** A local driver with real box agents (built-in terminal server) under a fresh temp root. */
export function benchLocalDriver(name: string): { root: string; driver: LocalDriver } {
  const root = mkdtempSync(join(tmpdir(), `berth-bench-${name}-`));
  const driver = new LocalDriver({
    root,
    agentEntry: AGENT_ENTRY,
    nodePath: process.execPath,
    agentEnv: { BERTH_TERMINAL: "builtin" },
  });
  return { root, driver };
}

/** Stops every box a bench started under `root` (the driver needs a spec; only the id matters to it). */
export async function destroyBenchBoxes(
  driver: LocalDriver,
  root: string,
  controlPlaneUrl: string,
): Promise<void> {
  for (const id of readdirSync(root)) {
    const spec: WorkspaceSpec = {
      workspaceId: id,
      ownerId: "bench",
      location: "local",
      serverType: "local",
      volumeSizeGb: 10,
      controlPlaneUrl,
      secrets: { agentToken: "bench", ttydCredential: "bench:bench", resticPassword: "bench" },
    };
    await driver.destroy(spec, { stage() {}, line() {} }).catch(() => {});
  }
}

/**
 * nginx as a plain keep-alive reverse proxy (WebSocket upgrades included) in front of a loopback port: the
 * baseline the control plane's proxies are compared with. Null when no `nginx` binary is installed
 * (Debian package `nginx`). `workers`: nginx's worker_processes (1 unless a bench compares processes).
 */
export async function startNginxProxy(
  upstreamPort: number,
  options: {
    workers?: number;
    /** `name=value`: `GET /__login` sets this cookie (as a sign-in would) and redirects to `/`. */
    loginCookie?: string;
  } = {},
): Promise<{ port: number; pid: number; stop(): void } | null> {
  if (!commandRuns("nginx", ["-v"])) return null;
  if (options.loginCookie && !/^[\w.~=-]+$/.test(options.loginCookie)) {
    throw new Error("loginCookie: only name=value of token characters fits in nginx's config unquoted");
  }
  const login = options.loginCookie
    ? `location = /__login { add_header Set-Cookie "${options.loginCookie}; Path=/; HttpOnly; SameSite=Lax"; return 302 /; }`
    : "";
  const dir = mkdtempSync(join(tmpdir(), "berth-bench-nginx-"));
  const port = await freePort();
  writeFileSync(
    join(dir, "nginx.conf"),
    `worker_processes ${options.workers ?? 1}; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir};
  uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  map $http_upgrade $connection_upgrade { default upgrade; '' ""; }
  upstream box { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server { listen 127.0.0.1:${port}; ${login}
    location / { proxy_pass http://box; proxy_http_version 1.1; proxy_buffering off;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 1h; } }
}
`,
  );
  const child = spawn("nginx", ["-c", join(dir, "nginx.conf"), "-p", dir], { stdio: "ignore" });
  for (let i = 0; i < 50; i++) {
    const up = await fetch(`http://127.0.0.1:${port}/`).then(
      () => true,
      () => false,
    );
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    pid: child.pid!,
    stop: () => {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * `items` in `rounds` rounds, each round starting one item later than the one before, so no item always runs
 * first or always right after the same other one.
 */
export function inRotatingOrder<T>(items: T[], rounds: number): T[] {
  const order: T[] = [];
  for (let r = 0; r < rounds; r++)
    for (let i = 0; i < items.length; i++) order.push(items[(r + i) % items.length]!);
  return order;
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/**
 * Ratios taken round by round (the ways of one round ran back to back, so a slow stretch of the machine
 * lands on all of them): their median and middle half, which shows how far one round can be trusted.
 */
export function roundByRound(ratios: number[]): string {
  const s = [...ratios].sort((a, b) => a - b);
  const at = (q: number) => s[Math.round(q * (s.length - 1))]!;
  return `median ${fmt(median(s), 2)}x, middle half ${fmt(at(0.25), 2)}–${fmt(at(0.75), 2)}x`;
}
