/**
 * Idle autostop on real Postgres, with a controllable clock: the warning, "keep running", the stop as a
 * normal build with reason `autostop`, a working Claude that is never stopped for idleness (until the cap
 * of unattended time), autostop turned off, the settings route, and a tick whose query count does not grow
 * with the number of workspaces.
 */
import { afterAll, describe, expect, it, vi } from "vitest";
import { ensureWebBuild } from "../app/web-build.ts";
import { upsertUser } from "../domain/identity/actor.ts";
import { createLogger } from "../platform/logger.ts";
import { SYSTEM } from "../store/actors.ts";
import { AutostopStore } from "../store/autostop.ts";
import { connectDatabase } from "../store/client.ts";
import { sessions, workspaceBuilds } from "../store/schema.ts";
import { Store } from "../store/store.ts";
import { HAVE_CHROMIUM, launchChromium, RESULTS } from "../test/browser.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { insertWorkspace } from "../test/fixtures.ts";
import { Autostop } from "../workers/autostop.ts";

const MIN = 60_000;

describe("idle autostop", async () => {
  // No build worker: a stop is the enqueued build (its running is the build worker's, tested elsewhere).
  const cp = await startTestControlPlane({}, { runBuilds: false });
  const { db, pool } = cp.deps.database;
  const token = cp.localToken;
  const owner = await pool.query("SELECT id FROM users WHERE external_id = 'local:owner'");
  const ownerId: string = owner.rows[0].id;

  // Activity happened two hours ago, so the route's real-time "keep running" lies in the clock's future.
  const t0 = Date.now() - 120 * MIN;
  let clock = t0;
  const autostop = new Autostop({
    store: cp.deps.store,
    workspaces: cp.deps.workspaces,
    log: createLogger("silent"),
    now: () => new Date(clock),
    options: { warnLeadMs: 5 * MIN, workingCapMs: 8 * 60 * MIN },
  });
  const idleWorkspace = async (name: string, fields: Record<string, unknown> = {}) =>
    insertWorkspace(db, ownerId, {
      name,
      state: "ready",
      stateChangedAt: new Date(t0),
      lastActivityAt: new Date(t0),
      ...fields,
    });
  const stateOf = async (id: string) =>
    (await pool.query("SELECT state, autostop_warned_at FROM workspaces WHERE id = $1", [id])).rows[0];

  it("sets the idle timeout through the API: a bad value is a 400 naming the field, null turns it off", async () => {
    const ws = await idleWorkspace("settings");
    expect((await json(await cp.api(`/api/v1/workspaces/${ws.id}`, { token }))).workspace).toMatchObject({
      idleTimeoutMinutes: 30,
      autostopWarnedAt: null,
    });
    for (const bad of [
      { idleTimeoutMinutes: 2 },
      { idleTimeoutMinutes: "30" },
      { idleTimeoutMinutes: 9.5 },
      {},
    ]) {
      const res = await cp.api(`/api/v1/workspaces/${ws.id}`, { method: "PATCH", token, json: bad });
      expect(res.status).toBe(400);
      expect((await json(res)).error.message).toContain("idleTimeoutMinutes");
    }
    const res = await cp.api(`/api/v1/workspaces/${ws.id}`, {
      method: "PATCH",
      token,
      json: { idleTimeoutMinutes: 60 },
    });
    expect((await json(res)).workspace.idleTimeoutMinutes).toBe(60);
    const off = await cp.api(`/api/v1/workspaces/${ws.id}`, {
      method: "PATCH",
      token,
      json: { idleTimeoutMinutes: null },
    });
    expect((await json(off)).workspace.idleTimeoutMinutes).toBeNull();
  });

  it("warns an idle workspace, postpones on keep running, then hibernates it with reason autostop", async () => {
    const ws = await idleWorkspace("idle");
    const off = await idleWorkspace("never", { idleTimeoutMinutes: null });

    clock = t0 + 20 * MIN;
    expect((await autostop.tick()).warned).not.toContain(ws.id);
    clock = t0 + 26 * MIN;
    const warned = await autostop.tick();
    expect(warned.warned).toContain(ws.id);
    expect(warned.warned).not.toContain(off.id);
    expect(warned.stopped).toEqual([]);
    expect((await autostop.tick()).warned).not.toContain(ws.id); // warned once
    const inbox = (await json(await cp.api("/api/v1/notifications", { token }))).notifications;
    const warning = inbox.find((n: { workspaceId: string }) => n.workspaceId === ws.id);
    expect(warning).toMatchObject({ kind: "autostop_warning", title: "Idle: idle hibernates soon" });

    // "Keep running" (the button's route): the warning is void and the idle clock restarts now.
    const kept = await cp.api(`/api/v1/workspaces/${ws.id}/keep-running`, { method: "POST", token });
    expect(kept.status).toBe(200);
    expect((await json(kept)).workspace.autostopWarnedAt).toBeNull();
    const keptAt = Date.now();
    clock = keptAt + 1 * MIN;
    expect(await autostop.tick()).toMatchObject({ stopped: [] });
    expect((await stateOf(ws.id)).state).toBe("ready");

    clock = keptAt + 26 * MIN;
    expect((await autostop.tick()).warned).toContain(ws.id);
    clock = keptAt + 28 * MIN; // idle past the warning lead, but not yet past the timeout
    expect((await autostop.tick()).stopped).not.toContain(ws.id);
    clock = keptAt + 31 * MIN;
    expect((await autostop.tick()).stopped).toContain(ws.id);
    expect((await stateOf(ws.id)).state).toBe("hibernating");
    const builds = await pool.query(
      "SELECT transition, reason, status, initiator_id FROM workspace_builds WHERE workspace_id = $1",
      [ws.id],
    );
    expect(builds.rows).toEqual([
      { transition: "stop", reason: "autostop", status: "pending", initiator_id: null },
    ]);
    // Autostop turned off: never warned, never stopped, however long it idles.
    clock = t0 + 48 * 60 * MIN;
    const late = await autostop.tick();
    expect([...late.warned, ...late.stopped]).not.toContain(off.id);
    expect((await stateOf(off.id)).state).toBe("ready");
  });

  it("does not stop a workspace its owner keeps running after the tick found it due", async () => {
    const ws = await idleWorkspace("kept-at-the-last-moment");
    clock = t0 + 26 * MIN;
    expect((await autostop.tick()).warned).toContain(ws.id);
    clock = t0 + 31 * MIN;
    // "Keep running" lands between the tick's read of what is due and its hibernate request.
    const dueToStop = AutostopStore.prototype.dueToStop;
    const spy = vi.spyOn(AutostopStore.prototype, "dueToStop").mockImplementation(async function (
      this: AutostopStore,
      t,
    ) {
      const due = await dueToStop.call(this, t);
      expect(due).toContain(ws.id);
      const kept = await cp.api(`/api/v1/workspaces/${ws.id}/keep-running`, { method: "POST", token });
      expect(kept.status).toBe(200);
      return due;
    });
    try {
      expect((await autostop.tick()).stopped).not.toContain(ws.id);
    } finally {
      spy.mockRestore();
    }
    expect((await stateOf(ws.id)).state).toBe("ready");
    const builds = await pool.query("SELECT 1 FROM workspace_builds WHERE workspace_id = $1", [ws.id]);
    expect(builds.rowCount).toBe(0);
  });

  it("activity from before a warning that is written after it (the relay flushes every 30 s) voids it", async () => {
    const ws = await idleWorkspace("late-flush");
    clock = t0 + 26 * MIN;
    expect((await autostop.tick()).warned).toContain(ws.id);
    // A keystroke at 25.5 minutes, stored by the relay's next flush, after the warning went out.
    await pool.query("UPDATE workspaces SET last_activity_at = $2 WHERE id = $1", [
      ws.id,
      new Date(t0 + 25.5 * MIN),
    ]);
    clock = t0 + 27 * MIN;
    await autostop.tick();
    expect((await stateOf(ws.id)).autostop_warned_at).toBeNull();
    // Idle again from 25.5 minutes: a new warning five minutes ahead of the new stop, then the stop.
    clock = t0 + 51 * MIN;
    expect((await autostop.tick()).warned).toContain(ws.id);
    clock = t0 + 55.75 * MIN;
    expect((await autostop.tick()).stopped).not.toContain(ws.id);
    clock = t0 + 56 * MIN;
    expect((await autostop.tick()).stopped).toContain(ws.id);
  });

  it("never stops a workspace whose Claude is working, even with no terminal attached, until the cap", async () => {
    const ws = await idleWorkspace("working");
    await db.insert(sessions).values({
      workspaceId: ws.id,
      name: "main",
      claudeState: "working",
      claudeStateSince: new Date(t0),
    });
    for (const minutes of [26, 31, 120, 7 * 60]) {
      clock = t0 + minutes * MIN;
      const r = await autostop.tick();
      expect([...r.warned, ...r.stopped]).not.toContain(ws.id);
    }
    expect(await stateOf(ws.id)).toMatchObject({ state: "ready", autostop_warned_at: null });
    // Eight hours with nothing else happening: an unattended Claude no longer holds the box up.
    clock = t0 + 8 * 60 * MIN + 1;
    expect((await autostop.tick()).warned).toContain(ws.id);
    // Claude reports a new state (the agent's event): activity, so the warning is void at the next tick.
    await pool.query("UPDATE workspaces SET last_activity_at = $2, autostop_warned_at = NULL WHERE id = $1", [
      ws.id,
      new Date(clock),
    ]);
    clock += 6 * MIN;
    expect((await autostop.tick()).stopped).not.toContain(ws.id);
  });

  it("a new box forgets the Claude states of the previous one (a stale 'working' would hold off autostop)", async () => {
    const ws = await idleWorkspace("rewoken");
    await db.insert(sessions).values({
      workspaceId: ws.id,
      name: "main",
      claudeState: "working",
      claudeStateSince: new Date(t0),
    });
    const [build] = await db
      .insert(workspaceBuilds)
      .values({ workspaceId: ws.id, number: 1, transition: "start", reason: "user", status: "running" })
      .returning();
    await cp.deps.store.as(SYSTEM.builds).buildQueue.openInstance(build!, "hash-of-a-new-token");
    const { rows } = await pool.query(
      "SELECT claude_state, claude_state_detail, claude_state_since FROM sessions WHERE workspace_id = $1",
      [ws.id],
    );
    expect(rows).toEqual([{ claude_state: null, claude_state_detail: null, claude_state_since: null }]);
  });

  it("someone else's workspace: settings and keep running are 404", async () => {
    const mallory = await upsertUser(cp.deps.store, "user_autostop_mallory");
    const cookie = `berth_session=${await cp.deps.authenticator.sessionFor(mallory)}`;
    const ws = await idleWorkspace("private");
    const patch = await cp.api(`/api/v1/workspaces/${ws.id}`, {
      method: "PATCH",
      headers: { cookie },
      json: { idleTimeoutMinutes: null },
    });
    expect(patch.status).toBe(404);
    const keep = await cp.api(`/api/v1/workspaces/${ws.id}/keep-running`, {
      method: "POST",
      headers: { cookie },
    });
    expect(keep.status).toBe(404);
    expect(
      (await pool.query("SELECT idle_timeout_minutes FROM workspaces WHERE id = $1", [ws.id])).rows[0],
    ).toEqual({
      idle_timeout_minutes: 30,
    });
  });

  it.skipIf(!HAVE_CHROMIUM)(
    "offers Keep running in the web client, on the workspace and in the feed",
    async () => {
      await ensureWebBuild(createLogger("silent"));
      const ws = await idleWorkspace("warned");
      clock = t0 + 26 * MIN;
      expect((await autostop.tick()).warned).toContain(ws.id);
      const browser = await launchChromium();
      afterAll(() => browser.close());
      const page = await browser.newPage({ viewport: { width: 360, height: 740 } });
      await page.goto(cp.loginUrl!);
      await page.getByRole("heading", { name: "Workspaces" }).waitFor();
      await page.getByRole("button", { name: /^notifications/ }).click();
      await page.getByRole("button", { name: "Keep running" }).first().waitFor();
      await page.screenshot({ path: `${RESULTS}phone-autostop-feed.png` });
      // The request fails (the server cannot answer just now): the user is told, and the warning stays
      // unread with its button, since the workspace will hibernate as warned.
      await page.route("**/keep-running", (route) =>
        route.fulfill({
          status: 503,
          contentType: "application/json",
          body: '{"error":{"code":"unavailable","message":"try again"}}',
        }),
      );
      await page.getByRole("button", { name: "Keep running" }).first().click();
      await page.getByRole("alert").filter({ hasText: "was not kept running" }).waitFor();
      await page.getByRole("button", { name: "Keep running" }).first().waitFor();
      expect((await stateOf(ws.id)).autostop_warned_at).not.toBeNull();
      await page.unroute("**/keep-running");
      await page.keyboard.press("Escape");
      await page.goto(`${cp.url}/#/w/${ws.id}`);
      const alert = page.getByRole("alert").filter({ hasText: "hibernates in a few minutes" });
      await alert.waitFor();
      await page.screenshot({ path: `${RESULTS}phone-autostop-warning.png`, fullPage: true });
      await alert.getByRole("button", { name: "Keep running" }).click();
      await alert.waitFor({ state: "detached" });
      expect((await stateOf(ws.id)).autostop_warned_at).toBeNull();
      await page.getByLabel("Hibernate when idle for").selectOption("off");
      await expect
        .poll(
          async () =>
            (await pool.query("SELECT idle_timeout_minutes FROM workspaces WHERE id = $1", [ws.id])).rows[0],
        )
        .toEqual({ idle_timeout_minutes: null });
    },
  );

  it("a tick's query count does not grow with the number of workspaces (10,000 seeded)", async () => {
    // Its own connection, so only the tick's statements are counted.
    const database = connectDatabase(cp.deps.database.url, { max: 2 });
    let queries = 0;
    const query = database.pool.query.bind(database.pool);
    database.pool.query = ((...args: Parameters<typeof query>) => {
      queries++;
      return query(...args);
    }) as typeof database.pool.query;
    const counted = new Autostop({
      store: new Store(database, { secretBox: cp.deps.secretBox }),
      workspaces: cp.deps.workspaces,
      log: createLogger("silent"),
      now: () => new Date(clock),
    });
    try {
      clock = Date.now();
      await counted.tick();
      const few = queries;
      queries = 0;
      await pool.query(
        `INSERT INTO workspaces (owner_id, name, driver, location, server_type, volume_size_gb, state,
                                 state_changed_at, last_activity_at, idle_timeout_minutes)
         SELECT $1, 'seed-' || g, 'local', 'local', 'local', 10, 'ready', now(), now(), 30
           FROM generate_series(1, 10000) g`,
        [ownerId],
      );
      const r = await counted.tick();
      expect(r.warned).toEqual([]);
      expect(queries).toBe(few);
      expect(few).toBeLessThanOrEqual(3);
    } finally {
      await database.close();
    }
  });
});
