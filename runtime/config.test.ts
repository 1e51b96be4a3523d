import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config.ts";

describe("loadConfig", () => {
  it("defaults to local mode on loopback with the data dir under ./.berth", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ host: "127.0.0.1", port: 7600, driver: "local", auth: { mode: "local" } });
    expect(c.dataDir).toMatch(/\.berth$/);
  });

  it("treats empty variables as unset", () => {
    expect(loadConfig({ BERTH_PORT: "", DATABASE_URL: "" }).port).toBe(7600);
  });

  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ BERTH_PORT: "abc" }, /^BERTH_PORT: .*\(got "abc"\)$/],
    [{ BERTH_PORT: "70000" }, /^BERTH_PORT:/],
    [{ BERTH_HOST: "0.0.0.0" }, /^BERTH_HOST: local mode binds loopback only/],
    [{ DATABASE_URL: "mysql://x" }, /^DATABASE_URL: must be a postgres:\/\/ URL$/],
    [{ BERTH_LOCAL_TOKEN: "short" }, /^BERTH_LOCAL_TOKEN: must be at least 32 characters$/],
    [{ CLERK_SECRET_KEY: "sk_test_x" }, /^BERTH_AUTHORIZED_PARTIES: is required in hosted mode/],
    [{ BERTH_DRIVER: "docker" }, /^BERTH_DRIVER:/],
    [
      { CLERK_SECRET_KEY: "sk_live_x", BERTH_AUTHORIZED_PARTIES: "https://a" },
      /^BERTH_SECRET_KEYS: is required in hosted mode/,
    ],
  ];
  for (const [env, message] of bad) {
    it(`names the variable for ${JSON.stringify(env)}`, () => {
      expect(() => loadConfig(env)).toThrow(ConfigError);
      expect(() => loadConfig(env)).toThrow(message);
    });
  }

  it("never echoes a secret value in the message", () => {
    try {
      loadConfig({ BERTH_LOCAL_TOKEN: "tooshort-secret" });
    } catch (err) {
      expect(String(err)).not.toContain("tooshort-secret");
    }
  });

  it("allows any bind address in hosted mode", () => {
    const c = loadConfig({
      BERTH_HOST: "0.0.0.0",
      CLERK_SECRET_KEY: "sk_live_x",
      BERTH_AUTHORIZED_PARTIES: "https://a",
      BERTH_SECRET_KEYS: "k:x",
    });
    expect(c.auth).toEqual({
      mode: "hosted",
      secretKey: "sk_live_x",
      jwtKey: undefined,
      authorizedParties: ["https://a"],
    });
  });
});

describe("berth CLI", () => {
  const cli = fileURLToPath(new URL("./cli.ts", import.meta.url));
  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [cli, ...args], {
      env: { ...process.env, ...env },
      encoding: "utf8",
      timeout: 20_000,
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

  it("rejects unknown commands", () => {
    const r = run(["explode"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("unknown command 'explode'");
  });
});
