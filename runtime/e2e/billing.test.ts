/**
 * Plans, quotas, usage and Stripe's webhooks through a real control plane (scripted driver, the billing
 * jobs called directly with a controllable clock): a start over quota is a 402 naming the quota with no
 * build made; a running workspace on a hard-stop plan gets its 80 % and 100 % warnings, then a `billing`
 * hibernate; usage is the user's own (someone else's is 404); webhooks are verified and applied once.
 */
import Stripe from "stripe";
import { describe, expect, it } from "vitest";
import { upsertUser } from "../domain/identity/actor.ts";
import { storeWorkspaceSecrets } from "../store/secrets.ts";
import { agentChecksIn } from "../test/agent.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { insertWorkspace } from "../test/fixtures.ts";
import { waitFor } from "../test/wait.ts";

const PLANS = {
  free: { includedMinutes: 10, maxRunning: 1, boxSizes: ["cx22"], overage: "stop" },
  pro: { includedMinutes: 1000, maxRunning: 3, boxSizes: null, overage: "billed" },
};
const WEBHOOK_SECRET = "whsec_test_berth";

describe("billing: plans, quotas, usage, webhooks", async () => {
  // The clock starts at the real time (instances are opened with the database's clock) and is stepped.
  let now = new Date();
  const cp = await startTestControlPlane(
    {
      BERTH_BILLING_PLANS: JSON.stringify(PLANS),
      BERTH_MAX_WORKSPACES_PER_USER: "5",
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    },
    { billing: { clock: () => now } },
  );
  cp.driver.afterStart = agentChecksIn(cp);
  const { pool } = cp.deps.database;
  const alice = await upsertUser(cp.deps.store, "user_billing_alice");
  const bob = await upsertUser(cp.deps.store, "user_billing_bob");
  const as = async (user: typeof alice) => ({
    cookie: `berth_session=${await cp.deps.authenticator.sessionFor(user)}`,
  });
  const count = async (sql: string, params: unknown[] = []) =>
    Number((await pool.query(sql, params)).rows[0].n);
  const buildsOf = (userId: string) =>
    count(
      "SELECT count(*) AS n FROM workspace_builds b JOIN workspaces w ON w.id = b.workspace_id WHERE w.owner_id = $1",
      [userId],
    );
  const state = async (id: string) =>
    (await pool.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state as string;
  const tick = async () => {
    await cp.billing.meter.tick();
    return cp.billing.enforcer.run();
  };
  let wsId = "";

  it("meters in local mode but sends nothing to Stripe without STRIPE_SECRET_KEY", () => {
    expect(cp.billing.outbox).toBeNull();
  });

  it("refuses a start outside the plan with 402 naming the quota, and makes no build", async () => {
    const res = await cp.api("/api/v1/workspaces", {
      method: "POST",
      headers: await as(alice),
      json: { name: "big", serverType: "cx52" },
    });
    expect(res.status).toBe(402);
    const body = await json(res);
    expect(body.error.code).toBe("quota_box_size");
    expect(body.error.quota).toBe("boxSizes");
    expect(await buildsOf(alice.userId)).toBe(0);
    expect(await count("SELECT count(*) AS n FROM workspaces WHERE owner_id = $1", [alice.userId])).toBe(0);

    const ok = await cp.api("/api/v1/workspaces", {
      method: "POST",
      headers: await as(alice),
      json: { name: "a" },
    });
    expect(ok.status).toBe(202);
    wsId = (await json(ok)).workspace.id;
    await waitFor("the workspace ready", async () => (await state(wsId)) === "ready");

    const second = await cp.api("/api/v1/workspaces", {
      method: "POST",
      headers: await as(alice),
      json: { name: "b" },
    });
    expect(second.status).toBe(402);
    expect((await json(second)).error.code).toBe("quota_running_workspaces");
    expect(await buildsOf(alice.userId)).toBe(1);
  });

  it("warns at 80 % and 100 %, then hibernates a hard-stop plan's workspace with reason billing", async () => {
    now = new Date(now.getTime() + 8 * 60_000 + 30_000);
    const at80 = await tick();
    expect(at80.warned).toBe(1);
    expect(at80.stopped).toBe(0);
    expect(await state(wsId)).toBe("ready");

    now = new Date(now.getTime() + 3 * 60_000);
    const at100 = await tick();
    expect(at100.warned).toBe(1);
    expect(at100.stopped).toBe(1);
    // Ticking again warns and stops nothing twice.
    expect(await tick()).toMatchObject({ warned: 0, stopped: 0 });

    const { rows: notes } = await pool.query(
      "SELECT dedupe_key FROM notifications WHERE user_id = $1 AND kind = 'billing' ORDER BY created_at",
      [alice.userId],
    );
    expect(notes.map((n) => n.dedupe_key.split(":").at(-1))).toEqual(["80", "100"]);
    const { rows: builds } = await pool.query(
      "SELECT transition, reason FROM workspace_builds WHERE workspace_id = $1 ORDER BY number",
      [wsId],
    );
    expect(builds.at(-1)).toEqual({ transition: "stop", reason: "billing" });
    await waitFor("the workspace hibernated", async () => (await state(wsId)) === "hibernated");

    // Waking it again is over the minutes quota: 402, and no build.
    const before = await buildsOf(alice.userId);
    const wake = await cp.api(`/api/v1/workspaces/${wsId}/wake`, {
      method: "POST",
      headers: await as(alice),
    });
    expect(wake.status).toBe(402);
    expect((await json(wake)).error.code).toBe("quota_minutes");
    expect(await buildsOf(alice.userId)).toBe(before);
    expect(await state(wsId)).toBe("hibernated");
  });

  it("shows the user their usage, and nobody else's", async () => {
    const res = await cp.api("/api/v1/usage", { headers: await as(alice) });
    expect(res.status).toBe(200);
    const { usage } = await json(res);
    expect(usage.plan.name).toBe("free");
    expect(usage.minutes).toBeGreaterThanOrEqual(10);
    expect(usage.includedMinutes).toBe(10);
    expect(usage.remainingMinutes).toBe(0);
    expect(usage.projectedMinutes).toBeGreaterThanOrEqual(usage.minutes);
    expect(usage.workspaces).toEqual([{ workspaceId: wsId, name: "a", minutes: usage.minutes }]);
    expect(usage.days.reduce((n: number, d: { minutes: number }) => n + d.minutes, 0)).toBe(usage.minutes);

    const own = await cp.api(`/api/v1/workspaces/${wsId}/usage`, { headers: await as(alice) });
    expect((await json(own)).usage.minutes).toBe(usage.minutes);
    const other = await cp.api(`/api/v1/workspaces/${wsId}/usage`, { headers: await as(bob) });
    expect(other.status).toBe(404);
    const bobs = await json(await cp.api("/api/v1/usage", { headers: await as(bob) }));
    expect(bobs.usage).toMatchObject({ userId: bob.userId, minutes: 0, workspaces: [] });
    // The admin routes do not exist for a non-admin.
    const notAdmin = await cp.api(`/api/v1/admin/users/${alice.userId}/usage`, { headers: await as(bob) });
    expect(notAdmin.status).toBe(404);
  });

  it("lets an operator read a user's usage and move them to another plan", async () => {
    const read = await cp.api(`/api/v1/admin/users/${alice.userId}/usage`, { token: cp.localToken });
    expect(read.status).toBe(200);
    expect((await json(read)).usage.userId).toBe(alice.userId);
    const unknown = await cp.api(`/api/v1/admin/users/${alice.userId}/plan`, {
      method: "PUT",
      token: cp.localToken,
      json: { plan: "gold" },
    });
    expect(unknown.status).toBe(400);
    // A name every JavaScript object has is no plan either (it would lift every quota).
    const inherited = await cp.api(`/api/v1/admin/users/${alice.userId}/plan`, {
      method: "PUT",
      token: cp.localToken,
      json: { plan: "constructor" },
    });
    expect(inherited.status).toBe(400);
    expect((await json(inherited)).error.code).toBe("unknown_plan");
    const moved = await cp.api(`/api/v1/admin/users/${alice.userId}/plan`, {
      method: "PUT",
      token: cp.localToken,
      json: { plan: "pro" },
    });
    expect(moved.status).toBe(200);
    expect((await json(moved)).usage.plan.name).toBe("pro");
    const wake = await cp.api(`/api/v1/workspaces/${wsId}/wake`, {
      method: "POST",
      headers: await as(alice),
    });
    expect(wake.status).toBe(202);
  });

  it("lets only one of two simultaneous wakes past a one-running-workspace plan", async () => {
    const carol = await upsertUser(cp.deps.store, "user_billing_carol");
    const [a, b] = await Promise.all(
      ["x", "y"].map((name) =>
        insertWorkspace(cp.deps.database.db, carol.userId, { name, state: "hibernated", serverType: "cx22" }),
      ),
    );
    // The secrets a start needs, so the first wake's build does not fail at once (a failed workspace is no
    // longer running, and the second wake would then rightly pass).
    for (const w of [a!, b!])
      await storeWorkspaceSecrets(cp.deps.database.db, cp.deps.secretBox, w.id, {
        "agent-token": `token-${w.id}`,
        "ttyd-credential": "berth:terminal",
        "restic-password": "restic",
      });
    const headers = await as(carol);
    // Builds held while both requests are answered: a wake whose build had already finished (or failed)
    // would otherwise race the second request, which is not what this test is about.
    let release!: () => void;
    cp.driver.gate = new Promise<void>((resolve) => (release = resolve));
    let statuses: number[];
    try {
      statuses = await Promise.all(
        [a!, b!].map(
          async (w) => (await cp.api(`/api/v1/workspaces/${w.id}/wake`, { method: "POST", headers })).status,
        ),
      );
    } finally {
      release();
      cp.driver.gate = null;
    }
    const builds = await pool.query(
      `SELECT w.state, b.status, b.error FROM workspaces w LEFT JOIN workspace_builds b ON b.workspace_id = w.id WHERE w.owner_id = $1`,
      [carol.userId],
    );
    expect(statuses.sort(), JSON.stringify(builds.rows)).toEqual([202, 402]);
    expect(await buildsOf(carol.userId)).toBe(1);
  });

  it("applies a verified webhook once; a forged or replayed signature is 400 and applies nothing", async () => {
    await pool.query(
      `INSERT INTO billing_accounts (user_id, stripe_customer_id) VALUES ($1, 'cus_bob')
       ON CONFLICT (user_id) DO UPDATE SET stripe_customer_id = 'cus_bob'`,
      [bob.userId],
    );
    const event = (id: string, status: string, ageSeconds = 0) =>
      JSON.stringify({
        id,
        object: "event",
        type: "customer.subscription.updated",
        created: Math.floor(Date.now() / 1000) - ageSeconds,
        data: {
          object: {
            id: "sub_1",
            object: "subscription",
            customer: "cus_bob",
            status,
            metadata: { berth_plan: "pro" },
            items: { data: [] },
          },
        },
      });
    const post = (payload: string, signature: string) =>
      cp.api("/api/v1/billing/webhooks", {
        method: "POST",
        headers: { "content-type": "application/json", "stripe-signature": signature },
        body: payload,
      });
    const account = async () =>
      (
        await pool.query("SELECT plan, subscription_status FROM billing_accounts WHERE user_id = $1", [
          bob.userId,
        ])
      ).rows[0];
    const applied = () => count("SELECT count(*) AS n FROM stripe_webhook_events");

    const forgedPayload = event("evt_forged", "active");
    const forged = await post(
      forgedPayload,
      Stripe.webhooks.generateTestHeaderString({ payload: forgedPayload, secret: "whsec_someone_else" }),
    );
    expect(forged.status).toBe(400);
    expect((await json(forged)).error.code).toBe("invalid_signature");
    const stalePayload = event("evt_stale", "active");
    const replayed = await post(
      stalePayload,
      Stripe.webhooks.generateTestHeaderString({
        payload: stalePayload,
        secret: WEBHOOK_SECRET,
        timestamp: Math.floor(Date.now() / 1000) - 3600,
      }),
    );
    expect(replayed.status).toBe(400);
    const tampered = await post(
      event("evt_tampered", "active"),
      Stripe.webhooks.generateTestHeaderString({
        payload: event("evt_other", "active"),
        secret: WEBHOOK_SECRET,
      }),
    );
    expect(tampered.status).toBe(400);
    expect(await applied()).toBe(0);
    expect(await account()).toEqual({ plan: null, subscription_status: null });

    const payload = event("evt_1", "active");
    const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET });
    const first = await post(payload, signature);
    expect(first.status).toBe(200);
    expect(await json(first)).toEqual({ received: true, applied: true });
    expect(await account()).toEqual({ plan: "pro", subscription_status: "active" });

    // The operator changes the plan meanwhile; a redelivery of evt_1 must not apply it again.
    await pool.query("UPDATE billing_accounts SET plan = NULL WHERE user_id = $1", [bob.userId]);
    const again = await post(payload, signature);
    expect(again.status).toBe(200);
    expect(await json(again)).toEqual({ received: true, applied: false });
    expect(await account()).toEqual({ plan: null, subscription_status: "active" });
    expect(await applied()).toBe(1);

    // An older event delivered late is acknowledged and recorded, and changes nothing.
    const late = event("evt_0", "incomplete", 600);
    const lateAnswer = await post(
      late,
      Stripe.webhooks.generateTestHeaderString({ payload: late, secret: WEBHOOK_SECRET }),
    );
    expect(await json(lateAnswer)).toEqual({ received: true, applied: true });
    expect(await account()).toEqual({ plan: null, subscription_status: "active" });
    expect(await applied()).toBe(2);
  });

  it("keeps the customer's new subscription when their old one is deleted after it", async () => {
    const dave = await upsertUser(cp.deps.store, "user_billing_dave");
    await pool.query("INSERT INTO billing_accounts (user_id, stripe_customer_id) VALUES ($1, 'cus_dave')", [
      dave.userId,
    ]);
    const created = Math.floor(Date.now() / 1000);
    const send = async (id: string, type: string, subscription: string, status: string, at: number) => {
      const payload = JSON.stringify({
        id,
        object: "event",
        type,
        created: at,
        data: {
          object: {
            id: subscription,
            object: "subscription",
            customer: "cus_dave",
            status,
            metadata: { berth_plan: "pro" },
            items: { data: [] },
          },
        },
      });
      const res = await cp.api("/api/v1/billing/webhooks", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "stripe-signature": Stripe.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET }),
        },
        body: payload,
      });
      expect(res.status).toBe(200);
    };
    // Dave moves to a new subscription (sub_new), and his old one (sub_old) is canceled a moment later:
    // Stripe allows several subscriptions per customer, and this is how a plan change through Checkout goes.
    await send("evt_dave_1", "customer.subscription.created", "sub_dave_old", "active", created - 120);
    await send("evt_dave_2", "customer.subscription.created", "sub_dave_new", "active", created - 60);
    await send("evt_dave_3", "customer.subscription.deleted", "sub_dave_old", "canceled", created);
    const { rows } = await pool.query(
      "SELECT plan, subscription_id, subscription_status FROM billing_accounts WHERE user_id = $1",
      [dave.userId],
    );
    expect(rows[0]).toEqual({ plan: "pro", subscription_id: "sub_dave_new", subscription_status: "active" });
    // Deleting the current one does return him to the default plan.
    await send("evt_dave_4", "customer.subscription.deleted", "sub_dave_new", "canceled", created + 1);
    const { rows: after } = await pool.query(
      "SELECT plan, subscription_id, subscription_status FROM billing_accounts WHERE user_id = $1",
      [dave.userId],
    );
    expect(after[0]).toEqual({
      plan: null,
      subscription_id: "sub_dave_new",
      subscription_status: "canceled",
    });
  });

  it("reads the raw body on every path the webhook route answers (a trailing slash, another case)", async () => {
    // The router matches these paths like the webhook's own; the body must reach the signature check
    // unparsed there too, or a correctly signed event is refused as forged and Stripe retries it for days.
    for (const path of ["/api/v1/billing/webhooks/", "/API/v1/Billing/Webhooks"]) {
      const payload = JSON.stringify({
        id: `evt_path_${path}`,
        object: "event",
        type: "invoice.paid",
        created: Math.floor(Date.now() / 1000),
        data: { object: { id: "in_1", object: "invoice" } },
      });
      const res = await cp.api(path, {
        method: "POST",
        headers: {
          "content-type": "application/json; charset=utf-8",
          "stripe-signature": Stripe.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET }),
        },
        body: payload,
      });
      expect({ path, status: res.status, body: await json(res) }).toEqual({
        path,
        status: 200,
        body: { received: true, applied: true },
      });
    }
  });
});
