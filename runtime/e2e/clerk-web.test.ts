/**
 * Web sign-in in hosted mode, server side: what /api/v1/auth/config tells the client, the CSP that lets
 * clerk-js run (and local mode's, unchanged), and Clerk's `__session` cookie, honoured on GET and HEAD only.
 */
import helmet from "helmet";
import { describe, expect, it } from "vitest";
import { CLERK_SESSION_COOKIE } from "../domain/identity/authenticate.ts";
import { clerkKeys, publishableKey, signClerkSession } from "../test/clerk.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { startDevServer } from "../test/dev-server.ts";
import { insertWorkspace } from "../test/fixtures.ts";

const ORIGIN = "https://app.berth.test";
const keys = clerkKeys();
const pk = publishableKey("clerk.berth.test");
const session = (opts: { sub?: string; exp?: number; nbf?: number } = {}) =>
  signClerkSession(keys.privateKey, { azp: ORIGIN, ...opts });
const cookie = (value: string) => ({ cookie: `${CLERK_SESSION_COOKIE}=${value}` });

/** helmet's default policy, which local mode keeps as it is. */
const HELMET_DEFAULT_CSP = Object.entries(helmet.contentSecurityPolicy.getDefaultDirectives())
  .map(([name, values]) => [name, ...values].join(" "))
  .join(";");

const directive = (csp: string | null, name: string) =>
  csp
    ?.split(";")
    .map((d) => d.trim().split(/\s+/))
    .find(([n]) => n === name)
    ?.slice(1);

describe("hosted mode with web sign-in", async () => {
  const cp = await startTestControlPlane({
    CLERK_JWT_KEY: keys.jwtKey,
    BERTH_AUTHORIZED_PARTIES: ORIGIN,
    CLERK_PUBLISHABLE_KEY: pk,
    BERTH_LOCAL_TOKEN: "",
  });

  it("tells the client the publishable key and where clerk-js and Clerk's UI load from", async () => {
    const res = await cp.api("/api/v1/auth/config");
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({
      mode: "hosted",
      publishableKey: pk,
      clerkJsUrl: "https://clerk.berth.test/npm/@clerk/clerk-js@6/dist/clerk.browser.js",
      clerkUiUrl: "https://clerk.berth.test/npm/@clerk/ui@1/dist/ui.browser.js",
    });
  });

  it("lets clerk-js run under the CSP, and nothing else new", async () => {
    const csp = (await cp.api("/")).headers.get("content-security-policy");
    const fapi = "https://clerk.berth.test";
    expect(directive(csp, "default-src")).toEqual(["'self'"]);
    expect(directive(csp, "script-src")).toEqual(["'self'", fapi, "https://challenges.cloudflare.com"]);
    expect(directive(csp, "connect-src")).toEqual(["'self'", fapi]);
    expect(directive(csp, "img-src")).toEqual(["'self'", "data:", "https://img.clerk.com"]);
    expect(directive(csp, "frame-src")).toEqual(["'self'", "https://challenges.cloudflare.com"]);
    expect(directive(csp, "worker-src")).toEqual(["'self'", "blob:"]);
    expect(directive(csp, "style-src")).toContain("'unsafe-inline'");
    expect(directive(csp, "object-src")).toEqual(["'none'"]);
    expect(directive(csp, "frame-ancestors")).toEqual(["'self'"]);
  });

  it("accepts Clerk's session cookie on GET and HEAD", async () => {
    const t = await session();
    expect((await cp.api("/api/v1/me", { headers: cookie(t) })).status).toBe(200);
    expect((await cp.api("/api/v1/workspaces", { method: "HEAD", headers: cookie(t) })).status).toBe(200);
  });

  it("refuses the cookie alone on a state-changing method, naming the header to send", async () => {
    const res = await cp.api("/api/v1/workspaces", {
      method: "POST",
      headers: cookie(await session()),
      json: { name: "csrf" },
    });
    expect(res.status).toBe(401);
    const body = await json(res);
    expect(body.error.code).toBe("session_cookie_needs_bearer");
    expect(body.error.message).toContain("Authorization: Bearer");
    const { rows } = await cp.deps.database.pool.query("SELECT 1 FROM workspaces WHERE name = 'csrf'");
    expect(rows).toHaveLength(0);
  });

  it("refuses two session cookies (one may be planted by a sibling site) instead of picking one", async () => {
    const mine = await session();
    const planted = await session({ sub: "user_planter" });
    const res = await cp.api("/api/v1/me", {
      headers: { cookie: `__session=${planted}; __session=${mine}` },
    });
    expect(res.status).toBe(401);
    expect((await json(res)).error.code).toBe("session_cookie_ambiguous");
  });

  it("refuses an expired cookie with the token's reason", async () => {
    const now = Math.floor(Date.now() / 1000);
    const res = await cp.api("/api/v1/me", {
      headers: cookie(await session({ exp: now - 120, nbf: now - 300 })),
    });
    expect(res.status).toBe(401);
    expect((await json(res)).error.code).toBe("token_expired");
  });

  it("prefers the Bearer header when both are present", async () => {
    const bobs = await session({ sub: "user_bob" });
    const now = Math.floor(Date.now() / 1000);
    const expired = await session({ exp: now - 120, nbf: now - 300 });
    const res = await cp.api("/api/v1/me", { token: bobs, headers: cookie(expired) });
    expect(res.status).toBe(200);
    const { rows } = await cp.deps.database.pool.query("SELECT id FROM users WHERE external_id = 'user_bob'");
    expect((await json(res)).user.id).toBe(rows[0].id);
    // A POST with a valid header and the cookie too is an ordinary signed-in POST.
    const logout = await cp.api("/api/v1/auth/logout", {
      method: "POST",
      token: bobs,
      headers: cookie(bobs),
    });
    expect(logout.status).toBe(204);
  });

  it("answers a request with neither as unauthenticated", async () => {
    const res = await cp.api("/api/v1/me");
    expect(res.status).toBe(401);
    expect((await json(res)).error.code).toBe("unauthenticated");
  });

  it("serves the path form of a preview on the cookie (GET only), and never forwards Clerk's cookies", async () => {
    const dev = await startDevServer();
    try {
      const mine = await session({ sub: "user_previewer" });
      const me = await json(await cp.api("/api/v1/me", { token: mine }));
      const ws = await insertWorkspace(cp.deps.database.db, me.user.id, { name: "pv", state: "ready" });
      const { pool } = cp.deps.database;
      await pool.query(
        `INSERT INTO workspace_instances (workspace_id, public_ip, agent_token_hash, agent_lifecycle)
         VALUES ($1, '127.0.0.1', md5(random()::text), 'ready')`,
        [ws.id],
      );
      const { rows } = await pool.query(
        "INSERT INTO previews (workspace_id, port, source) VALUES ($1, $2, 'declared') RETURNING id",
        [ws.id, dev.port],
      );
      const path = `/api/v1/previews/${rows[0].id}/echo`;
      const clerkCookies = `${CLERK_SESSION_COOKIE}=${mine}; __client_uat=1; app=1`;
      const res = await cp.api(path, { headers: { cookie: clerkCookies } });
      expect(res.status).toBe(200);
      const echoed = await json(res);
      expect(echoed.headers.cookie).toBe("app=1");
      const hits = dev.hits;
      const post = await cp.api(path, { method: "POST", headers: { cookie: clerkCookies } });
      expect(post.status).toBe(401);
      expect((await json(post)).error.code).toBe("session_cookie_needs_bearer");
      expect(dev.hits).toBe(hits);
      // Someone else's session cookie: the preview does not exist for them.
      const other = await cp.api(path, { headers: cookie(await session({ sub: "user_other" })) });
      expect(other.status).toBe(404);
    } finally {
      await dev.close();
    }
  });
});

describe("hosted mode without a publishable key", async () => {
  const cp = await startTestControlPlane({
    CLERK_JWT_KEY: keys.jwtKey,
    BERTH_AUTHORIZED_PARTIES: ORIGIN,
    BERTH_LOCAL_TOKEN: "",
  });

  it("says web sign-in is not configured, and the API still takes Bearer tokens", async () => {
    expect(await json(await cp.api("/api/v1/auth/config"))).toEqual({ mode: "hosted", publishableKey: null });
    expect((await cp.api("/api/v1/me", { token: await session() })).status).toBe(200);
  });

  it("keeps the strict CSP: no Clerk code will run", async () => {
    expect((await cp.api("/")).headers.get("content-security-policy")).toBe(HELMET_DEFAULT_CSP);
  });
});

describe("local mode", async () => {
  const cp = await startTestControlPlane();

  it("answers the auth config without any Clerk detail", async () => {
    expect(await json(await cp.api("/api/v1/auth/config"))).toEqual({ mode: "local" });
  });

  it("keeps helmet's strict default CSP", async () => {
    expect((await cp.api("/")).headers.get("content-security-policy")).toBe(HELMET_DEFAULT_CSP);
  });

  it("ignores a `__session` cookie", async () => {
    const res = await cp.api("/api/v1/me", { headers: cookie(await session()) });
    expect(res.status).toBe(401);
    expect((await json(res)).error.code).toBe("unauthenticated");
  });
});
