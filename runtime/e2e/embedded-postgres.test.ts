import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { ClusterBusyError, startEmbeddedPostgres } from "../store/embedded.ts";

const EVENTS = ["exit", "beforeExit", "SIGINT", "SIGTERM"] as const;

describe("embedded Postgres", () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-embedded-"));
  chmodSync(dir, 0o755);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("leaves the process's exit and signal handling alone", async () => {
    const before = EVENTS.map((e) => process.listenerCount(e));
    const db = await startEmbeddedPostgres(join(dir, "a"));
    try {
      expect(EVENTS.map((e) => process.listenerCount(e))).toEqual(before);
    } finally {
      await db.stop();
    }
  });

  it("reclaims a cluster orphaned by a killed owner, keeping its data", async () => {
    const clusterDir = join(dir, "b");
    const script = `
      import { startEmbeddedPostgres } from ${JSON.stringify(new URL("../store/embedded.ts", import.meta.url).href)};
      import pg from "pg";
      const db = await startEmbeddedPostgres(${JSON.stringify(clusterDir)});
      const c = new pg.Client(db.url); await c.connect();
      await c.query("CREATE TABLE survived (x int)"); await c.end();
      process.stdout.write("up\\n");
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on("data", (d) => String(d).includes("up") && resolve());
      child.once("exit", (code) => reject(new Error(`child exited ${code}`)));
    });
    const postmaster = Number(
      readFileSync(join(clusterDir, "data", "postmaster.pid"), "utf8").split("\n")[0],
    );
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    expect(() => process.kill(postmaster, 0)).not.toThrow(); // the orphan is still running

    const db = await startEmbeddedPostgres(clusterDir);
    try {
      const c = new pg.Client(db.url);
      await c.connect();
      const { rows } = await c.query("SELECT to_regclass('survived') AS t");
      await c.end();
      expect(rows[0].t).toBe("survived");
    } finally {
      await db.stop();
    }
  });

  it("lets a CLI command join the cluster a live server runs, and refuses a second server", async () => {
    const clusterDir = join(dir, "c");
    const script = `
      import { startEmbeddedPostgres } from ${JSON.stringify(new URL("../store/embedded.ts", import.meta.url).href)};
      import pg from "pg";
      const db = await startEmbeddedPostgres(${JSON.stringify(clusterDir)});
      const c = new pg.Client(db.url); await c.connect();
      await c.query("CREATE TABLE served (x int)"); await c.end();
      process.stdout.write("up\\n");
      process.once("SIGTERM", async () => { await db.stop(); process.exit(0); });
      setInterval(() => {}, 1000);`;
    const server = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise((r) => server.once("exit", r));
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout!.on("data", (d) => String(d).includes("up") && resolve());
        server.once("exit", (code) => reject(new Error(`server exited ${code}`)));
      });
      await expect(startEmbeddedPostgres(clusterDir)).rejects.toBeInstanceOf(ClusterBusyError);

      const joined = await startEmbeddedPostgres(clusterDir, { joinRunning: true });
      const c = new pg.Client(joined.url);
      await c.connect();
      const { rows } = await c.query("SELECT to_regclass('served') AS t");
      await c.end();
      expect(rows[0].t).toBe("served");
      await joined.stop(); // leaves the server's cluster running
      const again = new pg.Client(joined.url);
      await again.connect();
      await again.end();
    } finally {
      server.kill("SIGTERM");
      await exited;
    }
  });
});
