/**
 * The first thing a self-hoster does, as root: clone into a directory nobody else may enter (root's home,
 * `mktemp -d`) and run the README's two commands. Embedded Postgres runs as the `postgres` user, which
 * cannot traverse such a directory; this proves the product and the suite's Postgres still start there,
 * and that SIGINT to `npm start` stops everything cleanly.
 *
 * The clone is of the committed HEAD (what CI tests is a fresh clone anyway). Its node_modules is a hard-link
 * copy of this checkout's, so no install runs, but every path the product spawns lies inside the private
 * directory as on a fresh machine.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { freePort, privateClusterDir, STAGED_BINARIES } from "../store/embedded.ts";
import { waitFor } from "../test/wait.ts";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const asRoot = userInfo().uid === 0;

describe.skipIf(!asRoot)("a clone inside a private (0700) directory, as root", () => {
  const home = mkdtempSync(join(tmpdir(), "berth-private-"));
  const clone = join(home, "berth");
  const children: ChildProcess[] = [];

  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    rmSync(privateClusterDir(join(clone, ".berth", "postgres")), { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });

  it("is set up like root's home: closed to every other user", () => {
    chmodSync(home, 0o700);
    execFileSync("git", ["clone", "--quiet", "--no-hardlinks", REPO, clone]);
    execFileSync("cp", ["-al", join(REPO, "node_modules"), join(clone, "node_modules")]);
    // A file of its own, newer than the clone's lockfile, so ensure-env sees the modules as installed and
    // nothing ever writes through a hard link into this checkout's node_modules.
    const marker = join(clone, "node_modules", ".package-lock.json");
    rmSync(marker);
    copyFileSync(join(REPO, "node_modules", ".package-lock.json"), marker);
    expect(statSync(home).mode & 0o777).toBe(0o700);
  });

  it("runs the README's start command to /readyz, and SIGINT stops it with no warnings", async () => {
    const port = await freePort();
    let output = "";
    const npm = spawn("npm", ["start"], {
      cwd: clone,
      env: { ...process.env, BERTH_PORT: String(port), BERTH_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(npm);
    npm.stdout!.on("data", (d) => (output += d));
    npm.stderr!.on("data", (d) => (output += d));
    const exited = new Promise<string>((resolve) =>
      npm.once("exit", (code, signal) => resolve(signal ?? `exit ${code}`)),
    );

    await waitFor(
      "/readyz 200 from the private clone",
      async () => {
        if (npm.exitCode !== null) throw new Error(`npm start exited ${npm.exitCode}:\n${output}`);
        return (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.status === 200;
      },
      120_000,
      200,
    );
    npm.kill("SIGINT");
    // npm waits for the server, then ends itself with the signal it got (what a shell expects).
    expect(["SIGINT", "exit 0"]).toContain(await exited);
    const cluster = privateClusterDir(join(clone, ".berth", "postgres"));
    expect(existsSync(join(cluster, "data", "PG_VERSION")), "cluster kept outside the private dir").toBe(
      true,
    );
    expect(existsSync(join(cluster, "data", "postmaster.pid")), "Postgres still running").toBe(false);
    const problems = output.split("\n").filter((line) => /"level":(4|5|6)0|EACCES|Error:/.test(line));
    expect(problems, output).toEqual([]);
  }, 180_000);

  it("starts the suite's embedded Postgres from the clone's own binaries", () => {
    const dataRoot = mkdtempSync(join(tmpdir(), "berth-private-pg-"));
    chmodSync(dataRoot, 0o755); // as the global setup does
    try {
      const script = `
        import { startEmbeddedPostgres } from "./runtime/store/embedded.ts";
        const db = await startEmbeddedPostgres(${JSON.stringify(join(dataRoot, "cluster"))});
        const { default: pg } = await import("pg");
        const client = new pg.Client(db.url);
        await client.connect();
        const { rows } = await client.query("SELECT current_user AS who");
        await client.end();
        await db.stop();
        console.log("connected as " + rows[0].who);`;
      const out = execFileSync(
        join(clone, "node_modules", ".bin", "node"),
        ["--input-type=module", "-e", script],
        {
          cwd: clone,
          encoding: "utf8",
        },
      );
      expect(out).toContain("connected as postgres");
      // Staged binaries are shared by every clone on the machine, so nothing in them may point back into
      // the clone that staged them: deleting that clone would break every other one.
      const links = readdirSync(STAGED_BINARIES, { recursive: true, withFileTypes: true })
        .filter((entry) => entry.isSymbolicLink())
        .map((entry) => join(entry.parentPath, entry.name));
      expect(links.length, "the libraries' version links were staged").toBeGreaterThan(0);
      for (const link of links) expect(realpathSync(link).startsWith(`${STAGED_BINARIES}/`), link).toBe(true);
    } finally {
      rmSync(dataRoot, { recursive: true, force: true });
    }
  }, 120_000);
});
