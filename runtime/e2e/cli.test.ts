/**
 * `node runtime/app/cli.ts` as a child process: startup failures are one line naming the problem, and help
 * lists the commands and settings. (loadConfig itself is unit-tested in runtime/platform/config.test.ts.)
 */
import { spawn, spawnSync } from "node:child_process";
import { type AddressInfo, createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { createTestDatabase } from "../test/database.ts";

// Each test starts the CLI (all of the control plane's modules) once or twice: seconds each on a busy machine.
describe("berth CLI", { timeout: 150_000 }, () => {
  const cli = fileURLToPath(new URL("../app/cli.ts", import.meta.url));
  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [cli, ...args], {
      env: { ...process.env, ...env },
      encoding: "utf8",
      timeout: 60_000,
    });

  it("fails startup on bad config with one line naming the variable", () => {
    const r = run(["serve"], { BERTH_PORT: "abc", DATABASE_URL: "" });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual([
      'berth: invalid configuration: BERTH_PORT: must be a port number (got "abc")',
    ]);
  });

  it("prints help listing commands and environment variables", () => {
    const r = run(["--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("serve");
    expect(r.stdout).toContain("migrate");
    expect(r.stdout).toContain("BERTH_LOCAL_TOKEN");
    expect(run(["serve", "--help"]).stdout).toContain("local mode");
  });

  it("says in one line, without a stack trace, that the port is taken", async () => {
    const { url } = await createTestDatabase();
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      const child = spawn(process.execPath, [cli, "serve"], {
        env: { ...process.env, DATABASE_URL: url, BERTH_PORT: String(port), BERTH_LOG_LEVEL: "error" },
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (d) => (stderr += d));
      const code = await new Promise((r) => child.once("exit", r));
      expect(code).toBe(1);
      expect(stderr.trim().split("\n")).toEqual([
        `berth: 127.0.0.1:${port} is already in use (another berth?); stop that process or set BERTH_PORT`,
      ]);
    } finally {
      taken.close();
    }
  });

  it("rejects unknown commands", () => {
    const r = run(["explode"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("unknown command 'explode'");
  });
});
