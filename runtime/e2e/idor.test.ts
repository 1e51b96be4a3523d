/**
 * IDOR, for every write route that names a resource: user B sending it with user A's workspace, build,
 * session, preview or notification gets 404 (never 403), and the database is exactly as it was. The route
 * list is read from the router, so a new write route fails this test until it has a case here. A control
 * run then sends the same requests as A, who is not refused, so the 404s above are about ownership.
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { buildApp } from "../app/http-app.ts";
import { upsertUser } from "../domain/identity/actor.ts";
import { createApiToken } from "../domain/identity/api-tokens.ts";
import { createLogger } from "../platform/logger.ts";
import {
  notifications,
  previews,
  pushSubscriptions,
  sessions,
  workspaceBuilds,
  workspaceInstances,
} from "../store/schema.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { insertWorkspace } from "../test/fixtures.ts";

/** Every table that holds someone's data; rate limits and terminal socket slots are counters, not data. */
const OWNED_TABLES = [
  "users",
  "workspaces",
  "workspace_volumes",
  "workspace_instances",
  "workspace_builds",
  "workspace_build_logs",
  "workspace_secrets",
  "user_secrets",
  "sessions",
  "terminal_tokens",
  "previews",
  "preview_codes",
  "notifications",
  "push_subscriptions",
  "agent_actions",
  "audit_log",
  "billing_accounts",
  "backups",
  "api_tokens",
  "box_telemetry",
  "box_telemetry_history",
  "log_entries",
];

const WRITE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

describe("write routes refuse someone else's resources (IDOR)", async () => {
  // No worker: nothing may change the database between a request and the check after it.
  const cp = await startTestControlPlane({ BERTH_PREVIEW_DOMAIN: "preview.localhost" }, { runBuilds: false });
  const { db, pool } = cp.deps.database;

  const alice = await upsertUser(cp.deps.store, "user_idor_alice");
  const bob = await upsertUser(cp.deps.store, "user_idor_bob");
  const cookieOf = async (user: typeof alice) =>
    `berth_session=${await cp.deps.authenticator.sessionFor(user)}`;

  const ws = await insertWorkspace(db, alice.userId, { name: "alice", state: "ready" });
  const bobsWs = await insertWorkspace(db, bob.userId, { name: "bob", state: "ready" });
  await db.insert(workspaceInstances).values({
    workspaceId: ws.id,
    agentTokenHash: randomBytes(16).toString("hex"),
    publicIp: "127.0.0.1",
    terminalPort: 7681,
  });
  const [build] = await db
    .insert(workspaceBuilds)
    .values({ workspaceId: ws.id, number: 1, transition: "start", reason: "user", status: "pending" })
    .returning();
  const [session] = await db
    .insert(sessions)
    .values({ workspaceId: ws.id, name: "main", createdById: alice.userId })
    .returning();
  const [preview] = await db
    .insert(previews)
    .values({ workspaceId: ws.id, port: 3000, source: "declared" })
    .returning();
  const [notification] = await db
    .insert(notifications)
    .values({
      userId: alice.userId,
      workspaceId: ws.id,
      kind: "needs_input",
      title: "Claude needs you",
      dedupeKey: "idor",
    })
    .returning();

  await cp.deps.store.as(alice).userSecrets.put(ws.id, "ALICE_KEY", "alice-value");
  const { token: alicesToken } = await createApiToken(
    cp.deps.store.as(alice),
    { name: "alice's laptop", viaApiToken: false },
    "127.0.0.1",
  );
  const answers = { project: { name: "app", source: "new" }, goal: "a todo app", stack: "node" };
  const [subscription] = await db
    .insert(pushSubscriptions)
    .values({
      userId: alice.userId,
      endpoint: "https://push.example/alice",
      p256dh: "BAAA",
      auth: "AAAA",
    })
    .returning();

  interface Case {
    path: string;
    body?: unknown;
  }
  /** Each write route with an id, aimed by B at A's resources; mixed forms: B's workspace, A's rows. */
  const cases: Record<string, Case[]> = {
    "POST /api/v1/workspaces/:id/hibernate": [{ path: `/api/v1/workspaces/${ws.id}/hibernate` }],
    "POST /api/v1/workspaces/:id/wake": [{ path: `/api/v1/workspaces/${ws.id}/wake` }],
    "DELETE /api/v1/workspaces/:id": [{ path: `/api/v1/workspaces/${ws.id}` }],
    "PATCH /api/v1/workspaces/:id": [
      { path: `/api/v1/workspaces/${ws.id}`, body: { idleTimeoutMinutes: null } },
    ],
    "POST /api/v1/workspaces/:id/keep-running": [{ path: `/api/v1/workspaces/${ws.id}/keep-running` }],
    "POST /api/v1/builds/:id/cancel": [{ path: `/api/v1/builds/${build!.id}/cancel` }],
    "POST /api/v1/workspaces/:id/sessions": [
      { path: `/api/v1/workspaces/${ws.id}/sessions`, body: { name: "intruder" } },
    ],
    "DELETE /api/v1/workspaces/:id/sessions/:sessionId": [
      { path: `/api/v1/workspaces/${ws.id}/sessions/${session!.id}` },
      { path: `/api/v1/workspaces/${bobsWs.id}/sessions/${session!.id}` },
    ],
    "POST /api/v1/sessions/:id/terminal-token": [{ path: `/api/v1/sessions/${session!.id}/terminal-token` }],
    "POST /api/v1/workspaces/:id/sessions/:sessionId/input": [
      {
        path: `/api/v1/workspaces/${ws.id}/sessions/${session!.id}/input`,
        body: { text: "rm -rf ~", mode: "send" },
      },
      { path: `/api/v1/workspaces/${bobsWs.id}/sessions/${session!.id}/input`, body: { text: "rm -rf ~" } },
    ],
    "POST /api/v1/notifications/:id/read": [{ path: `/api/v1/notifications/${notification!.id}/read` }],
    "DELETE /api/v1/push/subscriptions/:id": [{ path: `/api/v1/push/subscriptions/${subscription!.id}` }],
    "POST /api/v1/workspaces/:id/previews": [
      { path: `/api/v1/workspaces/${ws.id}/previews`, body: { port: 3001 } },
    ],
    "DELETE /api/v1/workspaces/:id/previews/:previewId": [
      { path: `/api/v1/workspaces/${ws.id}/previews/${preview!.id}` },
      { path: `/api/v1/workspaces/${bobsWs.id}/previews/${preview!.id}` },
    ],
    "POST /api/v1/previews/:id/share": [{ path: `/api/v1/previews/${preview!.id}/share`, body: {} }],
    "DELETE /api/v1/previews/:id/share": [{ path: `/api/v1/previews/${preview!.id}/share` }],
    "POST /api/v1/previews/:id/open": [{ path: `/api/v1/previews/${preview!.id}/open`, body: {} }],
    "PUT /api/v1/workspaces/:id/secrets/:name": [
      { path: `/api/v1/workspaces/${ws.id}/secrets/ALICE_KEY`, body: { value: "overwritten" } },
    ],
    "DELETE /api/v1/workspaces/:id/secrets/:name": [
      { path: `/api/v1/workspaces/${ws.id}/secrets/ALICE_KEY` },
    ],
    "POST /api/v1/workspaces/:id/onboarding/draft": [
      { path: `/api/v1/workspaces/${ws.id}/onboarding/draft`, body: { answers } },
    ],
    "POST /api/v1/workspaces/:id/onboarding": [
      { path: `/api/v1/workspaces/${ws.id}/onboarding`, body: { answers } },
    ],
    "POST /api/v1/workspaces/:id/backups": [{ path: `/api/v1/workspaces/${ws.id}/backups` }],
    "POST /api/v1/workspaces/:id/backups/:snapshot/restore": [
      { path: `/api/v1/workspaces/${ws.id}/backups/${"a".repeat(64)}/restore`, body: {} },
      { path: `/api/v1/workspaces/${ws.id}/backups/${"a".repeat(64)}/restore`, body: { paths: ["../x"] } },
    ],
    "DELETE /api/v1/tokens/:id": [{ path: `/api/v1/tokens/${alicesToken.id}` }],
    // Operators' routes: to anyone but an admin they do not exist.
    "POST /api/v1/admin/workspaces/:id/repair": [{ path: `/api/v1/admin/workspaces/${ws.id}/repair` }],
    "POST /api/v1/admin/workspaces/:id/forget": [{ path: `/api/v1/admin/workspaces/${ws.id}/forget` }],
    "PUT /api/v1/admin/users/:id/plan": [
      { path: `/api/v1/admin/users/${alice.userId}/plan`, body: { plan: null } },
    ],
  };

  const send = async (route: string, c: Case, cookie: string) => {
    const method = route.split(" ")[0]!;
    return cp.api(c.path, { method, headers: { cookie }, ...(c.body === undefined ? {} : { json: c.body }) });
  };
  const snapshot = async () => {
    const out: Record<string, unknown[]> = {};
    for (const table of OWNED_TABLES)
      out[table] = (await pool.query(`SELECT * FROM ${table} ORDER BY 1`)).rows;
    return out;
  };

  it("has a case for every write route that names a resource", () => {
    const { apiRouter } = buildApp({ ...cp.deps, log: createLogger("silent") });
    const writeRoutes = apiRouter.stack
      .filter((layer) => String(layer.path).includes("/:"))
      .flatMap((layer) => layer.methods.filter((m) => WRITE_METHODS.has(m)).map((m) => `${m} ${layer.path}`));
    expect(new Set(Object.keys(cases))).toEqual(new Set(writeRoutes));
  });

  /** The path with each id replaced by whose it is. */
  const shown = (path: string) => path.replaceAll(/[0-9a-f-]{36}/g, (id) => (id === bobsWs.id ? "B" : "A"));

  for (const [route, forms] of Object.entries(cases)) {
    for (const c of forms) {
      it(`${route} (${shown(c.path)}) is 404 for B, and changes nothing`, async () => {
        const before = await snapshot();
        const res = await send(route, c, await cookieOf(bob));
        expect(res.status).toBe(404);
        expect((await json(res)).error.code).toBe("not_found");
        expect(await snapshot()).toEqual(before);
      });
    }
  }

  it("keeps A's logs from B: the workspace's search and the admin search are 404 for B", async () => {
    for (const path of [
      `/api/v1/workspaces/${ws.id}/logs`,
      "/api/v1/admin/logs",
      `/api/v1/admin/logs?workspace=${ws.id}`,
    ]) {
      const res = await cp.api(path, { headers: { cookie: await cookieOf(bob) } });
      expect(res.status, path).toBe(404);
    }
    expect(
      (await cp.api(`/api/v1/workspaces/${ws.id}/logs`, { headers: { cookie: await cookieOf(alice) } }))
        .status,
    ).toBe(200);
  });

  it("lets A do the same (the 404s are about ownership, not broken routes)", async () => {
    // In an order where each request still finds its resource: the preview is closed and the workspace
    // destroyed last. A state conflict (409) is fine here; a 404 is not.
    const order = [
      "POST /api/v1/notifications/:id/read",
      "DELETE /api/v1/push/subscriptions/:id",
      "DELETE /api/v1/tokens/:id",
      "PATCH /api/v1/workspaces/:id",
      "POST /api/v1/workspaces/:id/keep-running",
      "POST /api/v1/previews/:id/share",
      "DELETE /api/v1/previews/:id/share",
      "POST /api/v1/previews/:id/open",
      "POST /api/v1/workspaces/:id/previews",
      "DELETE /api/v1/workspaces/:id/previews/:previewId",
      "POST /api/v1/workspaces/:id/sessions",
      "PUT /api/v1/workspaces/:id/secrets/:name",
      "DELETE /api/v1/workspaces/:id/secrets/:name",
      "POST /api/v1/workspaces/:id/onboarding/draft",
      "POST /api/v1/workspaces/:id/onboarding",
      "POST /api/v1/sessions/:id/terminal-token",
      "POST /api/v1/workspaces/:id/sessions/:sessionId/input",
      "DELETE /api/v1/workspaces/:id/sessions/:sessionId",
      "POST /api/v1/builds/:id/cancel",
      "POST /api/v1/workspaces/:id/backups",
      "POST /api/v1/workspaces/:id/hibernate",
      "POST /api/v1/workspaces/:id/wake",
      "DELETE /api/v1/workspaces/:id",
    ];
    const statuses: Record<string, number> = {};
    for (const route of order) {
      statuses[route] = (await send(route, cases[route]![0]!, await cookieOf(alice))).status;
    }
    expect(Object.entries(statuses).filter(([, status]) => status === 404 || status >= 500)).toEqual([]);
  });
});
