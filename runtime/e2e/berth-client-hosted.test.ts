/**
 * The client against a hosted-mode control plane: `berth login` takes a personal API token (made with a
 * Clerk sign-in), checks it and stores it, and the client then works with it; a Clerk session token (it
 * lives a minute) is refused with a pointer to the tokens page and nothing is stored; a revoked token says
 * so, with a non-zero exit.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { clerkKeys, signClerkSession } from "../test/clerk.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { insertWorkspace } from "../test/fixtures.ts";

const CLIENT = fileURLToPath(new URL("../app/client/main.ts", import.meta.url));
const ORIGIN = "https://app.berth.test";

describe("the berth client against a hosted control plane", { timeout: 60_000 }, async () => {
  const { privateKey, jwtKey } = clerkKeys();
  const cp = await startTestControlPlane({
    CLERK_JWT_KEY: jwtKey,
    BERTH_AUTHORIZED_PARTIES: ORIGIN,
    BERTH_LOCAL_TOKEN: "",
  });
  const config = mkdtempSync(join(tmpdir(), "berth-client-"));
  const credentials = join(config, "berth", "credentials.json");

  const berth = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ code: number | null; out: string; stdout: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [CLIENT, ...args], {
        env: { ...process.env, XDG_CONFIG_HOME: config, BERTH_TOKEN: "", ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let stdout = "";
      child.stdout.on("data", (d) => {
        out += d;
        stdout += d;
      });
      child.stderr.on("data", (d) => (out += d));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, out, stdout }));
    });

  it("refuses a Clerk session token, pointing to the tokens page, and stores nothing", async () => {
    const session = await signClerkSession(privateKey, { azp: ORIGIN });
    expect((await cp.api("/api/v1/me", { token: session })).status).toBe(200);
    const run = await berth(["login", cp.url], { BERTH_TOKEN: session });
    expect(run.code).toBe(3);
    expect(run.out).toContain("runs in hosted mode: log in with a personal API token");
    expect(run.out).toContain(`${cp.url}/#/tokens`);
    expect(run.out).not.toContain(session);
    expect(existsSync(credentials)).toBe(false);
  });

  let tokenId = "";

  it("logs in with a personal API token and lists the workspaces with it", async () => {
    const session = await signClerkSession(privateKey, { azp: ORIGIN });
    const me = await json(await cp.api("/api/v1/me", { token: session }));
    await insertWorkspace(cp.deps.database.db, me.user.id, { name: "hosted-box", state: "ready" });
    const created = await cp.api("/api/v1/tokens", {
      method: "POST",
      token: session,
      json: { name: "laptop" },
    });
    expect(created.status).toBe(201);
    const { token, secret } = await json(created);
    tokenId = token.id;

    const login = await berth(["login", cp.url], { BERTH_TOKEN: secret });
    expect(login.code, login.out).toBe(0);
    expect(login.out).not.toContain(secret);
    expect(JSON.parse(readFileSync(credentials, "utf8"))).toEqual({ url: cp.url, token: secret });
    const list = await berth(["ws", "list", "--json"]);
    expect(list.code, list.out).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual([
      expect.objectContaining({ name: "hosted-box", state: "ready" }),
    ]);
  });

  it("says plainly that a revoked token was revoked, exit 3", async () => {
    const session = await signClerkSession(privateKey, { azp: ORIGIN });
    expect((await cp.api(`/api/v1/tokens/${tokenId}`, { method: "DELETE", token: session })).status).toBe(
      200,
    );
    const list = await berth(["ws", "list"]);
    expect(list.code).toBe(3);
    expect(list.out).toMatch(/API token \(berth_pat_[\w-]+…\) was revoked; create a new one at /);
    expect(list.out).toContain(`${cp.url}/#/tokens`);
    const again = await berth(["login", cp.url], {
      BERTH_TOKEN: JSON.parse(readFileSync(credentials, "utf8")).token,
    });
    expect(again.code).toBe(3);
    expect(again.out).toContain("was revoked");
  });
});
