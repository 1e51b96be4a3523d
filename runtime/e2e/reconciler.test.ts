import { describe, expect, it } from "vitest";
import { DriverError, StackBusyError, StackNotFoundError } from "../../stacks/errors.ts";
import { createLogger } from "../platform/logger.ts";
import { agentChecksIn } from "../test/agent.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { waitFor } from "../test/wait.ts";
import { MeterTicker } from "../workers/metering.ts";

describe("reconciler", async () => {
  const cp = await startTestControlPlane({ BERTH_MAX_WORKSPACES_PER_USER: "10" });
  cp.driver.afterStart = agentChecksIn(cp);
  const { pool } = cp.deps.database;
  /** Ready, and no build pending or running (ready comes from the agent while the build still runs). */
  const readyAndIdle = async (id: string) => {
    const { rows } = await pool.query(
      `SELECT state, (SELECT count(*)::int FROM workspace_builds
                      WHERE workspace_id = $1 AND status IN ('pending','running')) AS active
       FROM workspaces WHERE id = $1`,
      [id],
    );
    return rows[0].state === "ready" && rows[0].active === 0;
  };
  const create = async () => {
    const res = await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: {} });
    const id = (await json(res)).workspace.id as string;
    // Ready comes from the agent during the build; wait for the build itself to finish too.
    await waitFor("ready and idle", () => readyAndIdle(id));
    return id;
  };

  it("fixes public IP drift, flags missing and orphan stacks, in one listing per tick", async () => {
    const drifted = await create();
    const vanished = await create();
    const healthy = await create();
    cp.driver.world.get(drifted)!.publicIp = "198.51.100.77";
    cp.driver.world.delete(vanished);
    cp.driver.world.set("00000000-0000-4000-8000-00000000abcd", {
      workspaceId: "00000000-0000-4000-8000-00000000abcd",
      running: true,
      serverId: "srv-orphan",
      publicIp: "198.51.100.99",
      resourceIds: ["srv-orphan", "vol-orphan"],
    });

    const calls = cp.driver.observeAllCalls;
    const report = await cp.reconciler.tick();
    expect(cp.driver.observeAllCalls).toBe(calls + 1);
    expect(report.findings.map((f) => [f.kind, f.workspaceId]).sort()).toEqual(
      [
        ["ip_drift", drifted],
        ["missing_stack", vanished],
        ["orphan_stack", "00000000-0000-4000-8000-00000000abcd"],
      ].sort(),
    );
    const ip = await pool.query(
      "SELECT public_ip FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
      [drifted],
    );
    expect(ip.rows[0].public_ip).toBe("198.51.100.77");
    const states = await pool.query("SELECT id, state FROM workspaces WHERE id = ANY($1)", [
      [drifted, vanished, healthy],
    ]);
    expect(Object.fromEntries(states.rows.map((r) => [r.id, r.state]))).toEqual({
      [drifted]: "ready",
      [vanished]: "failed",
      [healthy]: "ready",
    });
    const audit = await pool.query(
      "SELECT action FROM audit_log WHERE action LIKE 'reconcile.%' ORDER BY action",
    );
    expect(audit.rows.map((r) => r.action)).toEqual(["reconcile.ip_drift", "reconcile.missing_stack"]);

    // Its server is gone, so its instance is closed: no compute minute is owed for it from here on.
    const later = new Date(Date.now() + 2 * 3600_000);
    await new MeterTicker({ store: cp.deps.store, log: createLogger("silent"), clock: () => later }).tick();
    const billed = await pool.query(
      `SELECT count(*)::int AS minutes FROM meter_events e
       JOIN workspace_instances i ON i.id = e.workspace_instance_id WHERE i.workspace_id = $1`,
      [vanished],
    );
    expect(billed.rows[0].minutes).toBeLessThanOrEqual(2);

    // A second tick finds only the orphan: the drift was fixed, the missing stack is already failed.
    const again = await cp.reconciler.tick();
    expect(again.findings.map((f) => f.kind)).toEqual(["orphan_stack"]);
    expect(again.queries).toBe(1);
  });

  it("marks a box whose agent never checks in unhealthy after the deadline", async () => {
    cp.driver.afterStart = null;
    const res = await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: {} });
    const id = (await json(res)).workspace.id as string;
    await waitFor(
      "starting",
      async () =>
        (await pool.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state === "starting",
    );
    await pool.query(
      "UPDATE workspace_instances SET started_at = now() - interval '11 minutes' WHERE workspace_id = $1",
      [id],
    );
    const report = await cp.reconciler.tick();
    expect(report.findings).toContainEqual(
      expect.objectContaining({ kind: "agent_timeout", workspaceId: id }),
    );
    expect((await pool.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state).toBe(
      "unhealthy",
    );
  });

  it("lets operators list, diff, repair and forget stacks", async () => {
    cp.driver.afterStart = agentChecksIn(cp);
    const admin = { token: cp.localToken };
    const list = await json(await cp.api("/api/v1/admin/stacks", admin));
    expect(list.stacks).toContainEqual(
      expect.objectContaining({ drift: "orphan: no live record", observed: "running" }),
    );

    const id = await create();
    const diff = await json(await cp.api(`/api/v1/admin/workspaces/${id}/diff?transition=stop`, admin));
    expect(diff.diff.changes[0]).toMatchObject({ resource: "server", op: "delete" });
    expect(diff.text).toContain("delete");
    const badDiff = await cp.api(`/api/v1/admin/workspaces/${id}/diff?transition=explode`, admin);
    expect(badDiff.status).toBe(400);

    await pool.query("UPDATE workspaces SET state = 'waking' WHERE id = $1", [id]);
    const repaired = await json(
      await cp.api(`/api/v1/admin/workspaces/${id}/repair`, { ...admin, method: "POST" }),
    );
    expect(repaired).toEqual({ state: "failed" });

    const forgot = await json(
      await cp.api(`/api/v1/admin/workspaces/${id}/forget`, { ...admin, method: "POST" }),
    );
    expect(forgot.leaked).toEqual(expect.arrayContaining([`vol-${id}`]));
    expect((await pool.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state).toBe(
      "destroyed",
    );
    const audit = await pool.query(
      "SELECT action FROM audit_log WHERE target_id = $1 AND action LIKE 'admin.%' ORDER BY id",
      [id],
    );
    expect(audit.rows.map((r) => r.action)).toEqual(["admin.repair", "admin.forget"]);
  });

  it("maps driver errors: a busy stack is 409, a missing one 404, any other failure 502 without addresses", async () => {
    cp.driver.afterStart = agentChecksIn(cp);
    const id = await create();
    const preview = cp.driver.preview.bind(cp.driver);
    const diff = () => cp.api(`/api/v1/admin/workspaces/${id}/diff`, { token: cp.localToken });
    try {
      cp.driver.preview = async () => {
        throw new StackBusyError("stack ws-x is locked by update 42");
      };
      expect((await diff()).status).toBe(409);
      cp.driver.preview = async () => {
        throw new StackNotFoundError("no stack ws-x");
      };
      expect((await diff()).status).toBe(404);
      cp.driver.preview = async () => {
        throw new DriverError("hcloud: server 203.0.113.50 failed");
      };
      const failed = await diff();
      expect(failed.status).toBe(502);
      expect((await json(failed)).error.message).not.toContain("203.0.113.50");
    } finally {
      cp.driver.preview = preview;
    }
  });

  it("does not fail a workspace that a build brought up after the tick's listing was taken", async () => {
    cp.driver.afterStart = agentChecksIn(cp);
    const id = await create();
    const post = (path: string) => cp.api(path, { method: "POST", token: cp.localToken });
    expect((await post(`/api/v1/workspaces/${id}/hibernate`)).status).toBe(202);
    await waitFor(
      "hibernated",
      async () =>
        (await pool.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state === "hibernated",
    );
    // Hold the wake build running, so the listing below sees the workspace without its server.
    let open!: () => void;
    cp.driver.gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    expect((await post(`/api/v1/workspaces/${id}/wake`)).status).toBe(202);
    const observeAll = cp.driver.observeAll.bind(cp.driver);
    try {
      cp.driver.observeAll = async () => {
        const listing = await observeAll();
        // The wake finishes while the tick is between its listing and its database read.
        cp.driver.gate = null;
        open();
        await waitFor("woken and idle", () => readyAndIdle(id));
        return listing;
      };
      const report = await cp.reconciler.tick();
      expect(report.findings.filter((f) => f.workspaceId === id)).toEqual([]);
    } finally {
      cp.driver.observeAll = observeAll;
    }
    expect((await pool.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state).toBe(
      "ready",
    );
  });

  it("hides admin routes from non-admins", async () => {
    const { upsertUser } = await import("../domain/identity/actor.ts");
    const user = await upsertUser(cp.deps.store, "user_plain");
    const cookie = `berth_session=${await cp.deps.authenticator.sessionFor(user)}`;
    expect((await cp.api("/api/v1/admin/stacks", { headers: { cookie } })).status).toBe(404);
  });
});
