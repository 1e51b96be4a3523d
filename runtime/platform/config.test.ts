import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ConfigError, ENV_DOCS, loadConfig } from "./config.ts";

describe("loadConfig", () => {
  it("defaults to local mode on loopback with the data dir under ./.berth", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ host: "127.0.0.1", port: 7600, driver: "local", auth: { mode: "local" } });
    expect(c.dataDir).toMatch(/\.berth$/);
  });

  it("takes the local boxes' terminal endpoint from BERTH_TERMINAL, auto by default", () => {
    expect(loadConfig({}).terminal).toBe("auto");
    expect(loadConfig({ BERTH_TERMINAL: "builtin" }).terminal).toBe("builtin");
    expect(loadConfig({ BERTH_TERMINAL: "/usr/local/bin/ttyd" }).terminal).toBe("/usr/local/bin/ttyd");
    expect(() => loadConfig({ BERTH_TERMINAL: "ttyd" })).toThrow(/^BERTH_TERMINAL: must be auto, builtin/);
  });

  it("reaches boxes public first unless BERTH_BOX_PATHS says otherwise", () => {
    expect(loadConfig({}).boxPaths).toEqual(["public", "tailnet"]);
    expect(loadConfig({ BERTH_BOX_PATHS: "tailnet,public" }).boxPaths).toEqual(["tailnet", "public"]);
    expect(loadConfig({ BERTH_BOX_PATHS: "tailnet" }).boxPaths).toEqual(["tailnet"]);
  });

  it("leaves /metrics open, aggregated only, and warns of a disk at 90 % unless told otherwise", () => {
    expect(loadConfig({})).toMatchObject({
      metrics: { token: null, perWorkspace: false },
      diskWarnPercent: 90,
    });
    expect(
      loadConfig({
        BERTH_METRICS_TOKEN: "a-metrics-token-of-some-length",
        BERTH_METRICS_PER_WORKSPACE: "1",
        BERTH_DISK_WARN_PERCENT: "85",
      }),
    ).toMatchObject({
      metrics: { token: "a-metrics-token-of-some-length", perWorkspace: true },
      diskWarnPercent: 85,
    });
  });

  it("takes a preview-only listener from BERTH_PREVIEW_LISTEN, loopback only in local mode", () => {
    expect(loadConfig({}).previewListen).toBeUndefined();
    expect(loadConfig({ BERTH_PREVIEW_LISTEN: "127.0.0.1:7601" }).previewListen).toEqual({
      host: "127.0.0.1",
      port: 7601,
    });
    expect(loadConfig({ BERTH_PREVIEW_LISTEN: "[::1]:7601" }).previewListen).toEqual({
      host: "::1",
      port: 7601,
    });
    expect(() => loadConfig({ BERTH_PREVIEW_LISTEN: "7601" })).toThrow(
      /^BERTH_PREVIEW_LISTEN: must be host:port/,
    );
    expect(() => loadConfig({ BERTH_PREVIEW_LISTEN: "127.0.0.1:70000" })).toThrow(
      /^BERTH_PREVIEW_LISTEN: port must be at most 65535/,
    );
    expect(() => loadConfig({ BERTH_PREVIEW_LISTEN: "0.0.0.0:7601" })).toThrow(
      /^BERTH_PREVIEW_LISTEN: local mode binds loopback only/,
    );
  });

  it("runs more than one process only with what every process must share", () => {
    expect(loadConfig({}).workers).toBe(1);
    const shared = {
      DATABASE_URL: "postgres://db/berth",
      BERTH_SECRET_KEYS: "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
      BERTH_LOCAL_TOKEN: "t".repeat(40),
    };
    expect(loadConfig({ ...shared, BERTH_WORKERS: "2" }).workers).toBe(2);
    expect(() => loadConfig({ BERTH_WORKERS: "2" })).toThrow(
      /^BERTH_WORKERS: more than one process needs DATABASE_URL .*BERTH_SECRET_KEYS .*BERTH_LOCAL_TOKEN/,
    );
    expect(() => loadConfig({ ...shared, BERTH_WORKERS: "2", BERTH_PORT: "0" })).toThrow(
      /^BERTH_WORKERS: more than one process needs a fixed BERTH_PORT/,
    );
    expect(() => loadConfig({ BERTH_WORKERS: "65" })).toThrow(/^BERTH_WORKERS: must be between 1 and 64/);
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
      { BERTH_DISK_WARN_PERCENT: "101" },
      /^BERTH_DISK_WARN_PERCENT: must be between 50 and 99 \(got "101"\)$/,
    ],
    [{ BERTH_METRICS_TOKEN: "short" }, /^BERTH_METRICS_TOKEN: must be at least 16 characters$/],
    [{ BERTH_METRICS_PER_WORKSPACE: "yes" }, /^BERTH_METRICS_PER_WORKSPACE: must be 0 or 1/],
    [{ BERTH_BOX_PATHS: "public,public" }, /^BERTH_BOX_PATHS: must be one of .*\(got "public,public"\)$/],
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

  it("refuses, in hosted mode, a preview domain under the API's registrable domain, and takes another", () => {
    const hosted = {
      CLERK_SECRET_KEY: "sk_live_x",
      BERTH_AUTHORIZED_PARTIES: "https://app.example.co.uk",
      BERTH_SECRET_KEYS: "k:x",
      BERTH_PUBLIC_URL: "https://app.example.co.uk",
      BERTH_DRIVER: "pulumi",
    };
    expect(() => loadConfig({ ...hosted, BERTH_PREVIEW_DOMAIN: "preview.example.co.uk" })).toThrow(
      /^BERTH_PREVIEW_DOMAIN: must be on another registrable domain than the API host app\.example\.co\.uk \(both are under example\.co\.uk\)/,
    );
    expect(loadConfig({ ...hosted, BERTH_PREVIEW_DOMAIN: "berth-previews.co.uk" }).previewDomain).toBe(
      "berth-previews.co.uk",
    );
  });

  it("allows any bind address in hosted mode", () => {
    const c = loadConfig({
      BERTH_HOST: "0.0.0.0",
      CLERK_SECRET_KEY: "sk_live_x",
      BERTH_AUTHORIZED_PARTIES: "https://a",
      BERTH_SECRET_KEYS: "k:x",
      BERTH_DRIVER: "pulumi",
    });
    expect(c.auth).toEqual({
      mode: "hosted",
      secretKey: "sk_live_x",
      jwtKey: undefined,
      authorizedParties: ["https://a"],
      web: null,
    });
  });
});

describe("Clerk web sign-in settings", () => {
  const hosted = { CLERK_JWT_KEY: "-----BEGIN PUBLIC KEY-----x", BERTH_AUTHORIZED_PARTIES: "https://a" };
  const withKeys = { ...hosted, BERTH_SECRET_KEYS: "k:x", BERTH_DRIVER: "pulumi" };
  // base64("clerk.berth.test$"), unpadded as Clerk issues them
  const pk = `pk_test_${Buffer.from("clerk.berth.test$").toString("base64").replace(/=+$/, "")}`;

  it("derives the Frontend API and the script URLs from the publishable key like Clerk's loader", () => {
    const c = loadConfig({ ...withKeys, CLERK_PUBLISHABLE_KEY: pk });
    expect(c.auth.mode === "hosted" && c.auth.web).toEqual({
      publishableKey: pk,
      frontendApi: "https://clerk.berth.test",
      clerkJsUrl: "https://clerk.berth.test/npm/@clerk/clerk-js@6/dist/clerk.browser.js",
      clerkUiUrl: "https://clerk.berth.test/npm/@clerk/ui@1/dist/ui.browser.js",
    });
  });

  it("takes CLERK_JS_URL and CLERK_UI_URL as they are", () => {
    const c = loadConfig({
      ...withKeys,
      CLERK_PUBLISHABLE_KEY: pk,
      CLERK_JS_URL: "http://127.0.0.1:9/clerk.browser.js",
      CLERK_UI_URL: "http://127.0.0.1:9/ui.browser.js",
    });
    expect(c.auth.mode === "hosted" && c.auth.web).toMatchObject({
      clerkJsUrl: "http://127.0.0.1:9/clerk.browser.js",
      clerkUiUrl: "http://127.0.0.1:9/ui.browser.js",
    });
  });

  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const bad: Array<[Record<string, string>, RegExp]> = [
    [
      { CLERK_PUBLISHABLE_KEY: "sk_test_abc" },
      /^CLERK_PUBLISHABLE_KEY: must start with pk_test_ or pk_live_$/,
    ],
    [
      { CLERK_PUBLISHABLE_KEY: `pk_live_${b64("clerk.example.com")}` },
      /^CLERK_PUBLISHABLE_KEY: is malformed/,
    ],
    [
      { CLERK_PUBLISHABLE_KEY: `pk_live_${b64("evil.com; script-src *$")}` },
      /^CLERK_PUBLISHABLE_KEY: is malformed/,
    ],
    [{ CLERK_JS_URL: "javascript:alert(1)" }, /^CLERK_JS_URL: must be an http\(s\) URL$/],
    [{ CLERK_UI_URL: "ftp://x/ui.js" }, /^CLERK_UI_URL: must be an http\(s\) URL$/],
  ];
  for (const [env, message] of bad) {
    it(`refuses ${JSON.stringify(env)}`, () => {
      expect(() => loadConfig({ ...withKeys, ...env })).toThrow(message);
    });
  }

  it("refuses the web settings in local mode, where they would do nothing", () => {
    expect(() => loadConfig({ CLERK_PUBLISHABLE_KEY: pk })).toThrow(
      /^CLERK_PUBLISHABLE_KEY: is a hosted-mode setting/,
    );
  });

  it("leaves web sign-in off without a publishable key", () => {
    const c = loadConfig(withKeys);
    expect(c.auth.mode === "hosted" && c.auth.web).toBeNull();
  });
});

describe("the README's configuration table", () => {
  it("documents every variable --help lists", () => {
    const readme = readFileSync(fileURLToPath(new URL("../../README.md", import.meta.url)), "utf8");
    const firstCells = readme
      .split("\n")
      .flatMap((line) => (line.startsWith("| `") ? [line.split("|")[1]!] : []));
    const documented = new Set(
      firstCells.flatMap((cell) => [...cell.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1])),
    );
    const missing = Object.keys(ENV_DOCS).filter((name) => !documented.has(name));
    expect(missing).toEqual([]);
  });
});
