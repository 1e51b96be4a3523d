/**
 * The client against a hosted-mode control plane: it says plainly that it supports local mode only (Clerk
 * session tokens live a minute, and API tokens for the CLI do not exist yet), and stores nothing, even
 * when handed a Clerk session token the API would accept.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { clerkKeys, signClerkSession } from "../test/clerk.ts";
import { startTestControlPlane } from "../test/control-plane.ts";

const CLIENT = fileURLToPath(new URL("../app/client/main.ts", import.meta.url));
const ORIGIN = "https://app.berth.test";

describe("the berth client against a hosted control plane", async () => {
  const { privateKey, jwtKey } = clerkKeys();
  const cp = await startTestControlPlane({
    CLERK_JWT_KEY: jwtKey,
    BERTH_AUTHORIZED_PARTIES: ORIGIN,
    BERTH_LOCAL_TOKEN: "",
  });

  it("refuses to log in, with a message that says why, and stores nothing", { timeout: 60_000 }, async () => {
    const session = await signClerkSession(privateKey, { azp: ORIGIN });
    expect((await cp.api("/api/v1/me", { token: session })).status).toBe(200);
    const config = mkdtempSync(join(tmpdir(), "berth-client-"));
    const run = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [CLIENT, "login", cp.url], {
        env: { ...process.env, XDG_CONFIG_HOME: config, BERTH_TOKEN: session },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, out }));
    });
    expect(run.code).toBe(3);
    expect(run.out).toContain("runs in hosted mode; the client supports local mode only");
    expect(run.out).not.toContain(session);
    expect(existsSync(join(config, "berth", "credentials.json"))).toBe(false);
  });
});
