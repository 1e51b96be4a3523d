/** Shared pieces for `npm run bench`: a private Postgres, quiet control planes, and result printing. */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { WorkspaceDriver } from "../../stacks/driver.ts";
import { LocalDriver } from "../../stacks/local/driver.ts";
import { loadConfig } from "../config.ts";
import { startEmbeddedPostgres } from "../db/embedded.ts";
import { AGENT_ENTRY } from "../drivers.ts";
import { createLogger } from "../observability/logger.ts";
import { type ControlPlane, type StartOptions, startControlPlane } from "../server.ts";
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
  const config = loadConfig({
    DATABASE_URL: databaseUrl,
    BERTH_PORT: "0",
    BERTH_DATA_DIR: mkdtempSync(join(tmpdir(), "berth-bench-cp-")),
    BERTH_SECRET_KEYS: TEST_SECRET_KEYS,
    BERTH_LOCAL_TOKEN: "bench-token-bench-token-bench-token-bench",
    BERTH_MAX_WORKSPACES_PER_USER: "1000",
    ...env,
  });
  return startControlPlane(config, {
    driver,
    logger: createLogger("silent"),
    runSchedules: false,
    ...options,
  });
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
