/**
 * Guards the authorization layer: every route is either on an explicit public list or refuses anonymous
 * requests, and one user's resources are invisible (404) to another.
 */

import { describe, expect, it } from "vitest";
import { buildApp } from "../app/http-app.ts";
import { upsertUser } from "../domain/identity/actor.ts";
import { createLogger } from "../platform/logger.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { insertWorkspace } from "../test/fixtures.ts";

/** Reviewed on purpose: adding a public route means adding it here. */
const PUBLIC_ROUTES = new Set([
  "GET /healthz",
  "GET /readyz",
  "GET /metrics",
  "GET /login",
  "GET /login.js",
  "GET /",
  "GET /assets/:file",
  // The PWA's fixed-name files (manifest, icons, service worker): static, public like the page itself.
  "GET /sw.js",
  "GET /manifest.webmanifest",
  "GET /icon-192.png",
  "GET /icon-512.png",
  "GET /icon-maskable-512.png",
  "GET /apple-touch-icon.png",
  "POST /api/v1/auth/login",
  "GET /api/v1/auth/config",
  "POST /api/v1/billing/webhooks",
  "GET /api/v1/openapi.json",
  "GET /api/v1/docs",
]);

const ANY_UUID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";

describe("route coverage", async () => {
  const cp = await startTestControlPlane();
  const { publicRouter, apiRouter, agentRouter } = buildApp({ ...cp.deps, log: createLogger("silent") });
  const routes = (router: typeof apiRouter) =>
    router.stack
      .filter((layer) => layer.methods.length > 0)
      .flatMap((layer) =>
        layer.methods.filter((m) => m !== "HEAD").map((m) => ({ method: m, path: String(layer.path) })),
      );

  it("has exactly the reviewed public routes", () => {
    expect(new Set(routes(publicRouter).map((r) => `${r.method} ${r.path}`))).toEqual(PUBLIC_ROUTES);
  });

  const protectedRoutes = routes(apiRouter);
  it("has protected routes to check", () => {
    expect(protectedRoutes.length).toBeGreaterThan(2);
  });

  for (const { method, path } of routes(agentRouter as unknown as typeof apiRouter)) {
    it(`${method} ${path} refuses a request without an agent token`, async () => {
      const res = await cp.api(path, { method, json: {} });
      expect(res.status).toBe(401);
      expect((await json(res)).error.code).toBe("agent_unauthorized");
    });
  }

  for (const { method, path } of protectedRoutes) {
    it(`${method} ${path} refuses anonymous requests`, async () => {
      const res = await cp.api(path.replaceAll(/:[a-zA-Z]+/g, ANY_UUID), { method });
      expect(res.status).toBe(401);
      expect((await json(res)).error.code).toBe("unauthenticated");
    });
  }
});

describe("ownership (IDOR)", async () => {
  const cp = await startTestControlPlane();
  const { db } = cp.deps.database;
  const alice = await upsertUser(cp.deps.store, "user_alice");
  const bob = await upsertUser(cp.deps.store, "user_bob");
  const alices = await insertWorkspace(db, alice.userId, { name: "alice" });
  const sessionAs = async (userId: string) =>
    `berth_session=${await cp.deps.authenticator.sessionFor({ userId, externalId: "", isAdmin: false })}`;

  it("lets the owner read their workspace", async () => {
    const res = await cp.api(`/api/v1/workspaces/${alices!.id}`, {
      headers: { cookie: await sessionAs(alice.userId) },
    });
    expect(res.status).toBe(200);
    expect((await json(res)).workspace.id).toBe(alices!.id);
  });

  it("answers 404, not 403, for someone else's workspace", async () => {
    const res = await cp.api(`/api/v1/workspaces/${alices!.id}`, {
      headers: { cookie: await sessionAs(bob.userId) },
    });
    expect(res.status).toBe(404);
    expect((await json(res)).error.code).toBe("not_found");
  });

  it("answers the same 404 for a malformed id", async () => {
    const res = await cp.api("/api/v1/workspaces/not-a-uuid", {
      headers: { cookie: await sessionAs(bob.userId) },
    });
    expect(res.status).toBe(404);
  });

  it("lists only the caller's workspaces", async () => {
    const res = await cp.api("/api/v1/workspaces", { headers: { cookie: await sessionAs(bob.userId) } });
    expect((await json(res)).workspaces).toEqual([]);
  });
});
