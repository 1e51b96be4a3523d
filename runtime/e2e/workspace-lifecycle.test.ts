import { describe, expect, it } from "vitest";
import { agentChecksIn } from "../test/agent.ts";
import { json, startTestControlPlane, type TestControlPlane } from "../test/control-plane.ts";
import { waitFor } from "../test/wait.ts";

async function workspaceState(cp: TestControlPlane, id: string): Promise<string> {
  return (await json(await cp.api(`/api/v1/workspaces/${id}`, { token: cp.localToken }))).workspace.state;
}

const waitState = (cp: TestControlPlane, id: string, state: string) =>
  waitFor(`workspace ${id} to be ${state}`, async () => (await workspaceState(cp, id)) === state);

async function fresh(cp: TestControlPlane): Promise<string> {
  // One workspace per user: destroy what an earlier test left before making a new one.
  const list = await json(await cp.api("/api/v1/workspaces", { token: cp.localToken }));
  for (const w of list.workspaces) {
    await cp.deps.database.pool.query("UPDATE workspaces SET state = 'destroyed' WHERE id = $1", [w.id]);
  }
  const res = await cp.api("/api/v1/workspaces", {
    method: "POST",
    token: cp.localToken,
    json: { name: "dev" },
  });
  expect(res.status).toBe(202);
  return (await json(res)).workspace.id;
}

describe("workspace lifecycle", async () => {
  const cp = await startTestControlPlane();
  cp.driver.afterStart = agentChecksIn(cp);
  const post = (path: string) => cp.api(path, { method: "POST", token: cp.localToken });

  it("goes create → ready → hibernate → hibernated → wake → ready → destroy → destroyed", async () => {
    const id = await fresh(cp);
    await waitState(cp, id, "ready");

    const instances = async () =>
      (
        await cp.deps.database.pool.query(
          "SELECT * FROM workspace_instances WHERE workspace_id = $1 ORDER BY started_at",
          [id],
        )
      ).rows;
    const [first] = await instances();
    expect(first.public_ip).toMatch(/^203\.0\.113\./);
    expect(first.ready_at).not.toBeNull();

    const hib = await post(`/api/v1/workspaces/${id}/hibernate`);
    expect(hib.status).toBe(202);
    expect((await json(hib)).workspace.state).toBe("hibernating");
    await waitState(cp, id, "hibernated");
    expect((await instances())[0].stopped_at).not.toBeNull();

    expect((await post(`/api/v1/workspaces/${id}/wake`)).status).toBe(202);
    await waitState(cp, id, "ready");
    const all = await instances();
    expect(all).toHaveLength(2);
    expect(all[1].stopped_at).toBeNull();

    const del = await cp.api(`/api/v1/workspaces/${id}`, { method: "DELETE", token: cp.localToken });
    expect(del.status).toBe(202);
    await waitFor(
      "destroy",
      async () => (await cp.api(`/api/v1/workspaces/${id}`, { token: cp.localToken })).status === 404,
    );
    const { rows } = await cp.deps.database.pool.query(
      "SELECT state, destroyed_at FROM workspaces WHERE id = $1",
      [id],
    );
    expect(rows[0].state).toBe("destroyed");
    expect(cp.driver.world.has(id)).toBe(false);

    const builds = await cp.deps.database.pool.query(
      "SELECT transition, status FROM workspace_builds WHERE workspace_id = $1 ORDER BY number",
      [id],
    );
    expect(builds.rows).toEqual([
      { transition: "start", status: "succeeded" },
      { transition: "stop", status: "succeeded" },
      { transition: "start", status: "succeeded" },
      { transition: "destroy", status: "succeeded" },
    ]);
    const audit = await cp.deps.database.pool.query(
      "SELECT action FROM audit_log WHERE target_id = $1 ORDER BY id",
      [id],
    );
    expect(audit.rows.map((r) => r.action)).toEqual([
      "workspace.create",
      "workspace.hibernate",
      "workspace.wake",
      "workspace.destroy",
    ]);
  });

  it("never shows a box address or secret to the client", async () => {
    const id = await fresh(cp);
    await waitState(cp, id, "ready");
    const bodies = await Promise.all(
      [`/api/v1/workspaces/${id}`, "/api/v1/workspaces", `/api/v1/workspaces/${id}/builds`].map(async (p) =>
        (await cp.api(p, { token: cp.localToken })).text(),
      ),
    );
    for (const body of bodies) {
      expect(body).not.toMatch(/203\.0\.113\./);
      expect(body).not.toMatch(/scripted-secret|bat_|berth:/);
    }
  });

  it("leaves a failed apply in `failed`, and a retry succeeds", async () => {
    const id = await fresh(cp);
    await waitState(cp, id, "ready");
    cp.driver.script("stop", {
      kind: "fail",
      message: "hcloud: server 203.0.113.9 is locked",
      partial: ["vol-x"],
    });
    await post(`/api/v1/workspaces/${id}/hibernate`);
    await waitState(cp, id, "failed");
    const builds = await json(await cp.api(`/api/v1/workspaces/${id}/builds`, { token: cp.localToken }));
    expect(builds.builds[0]).toMatchObject({ status: "failed", error: "hcloud: server [address] is locked" });
    expect((await post(`/api/v1/workspaces/${id}/hibernate`)).status).toBe(202);
    await waitState(cp, id, "hibernated");
  });

  it("retries a retryable driver error with backoff", async () => {
    const id = await fresh(cp);
    await waitState(cp, id, "ready");
    cp.driver.script("stop", { kind: "fail", message: "stack is locked by another update", retryable: true });
    await post(`/api/v1/workspaces/${id}/hibernate`);
    await waitState(cp, id, "hibernated");
    const { rows } = await cp.deps.database.pool.query(
      "SELECT attempt, status FROM workspace_builds WHERE workspace_id = $1 AND transition = 'stop'",
      [id],
    );
    expect(rows).toEqual([{ attempt: 2, status: "succeeded" }]);
  });

  it("cancels a hanging build through its AbortSignal", async () => {
    const id = await fresh(cp);
    await waitState(cp, id, "ready");
    cp.driver.script("stop", { kind: "hang" });
    const { build } = await json(await post(`/api/v1/workspaces/${id}/hibernate`));
    await waitFor(
      "build running",
      async () =>
        (await json(await cp.api(`/api/v1/builds/${build.id}`, { token: cp.localToken }))).build.status ===
        "running",
    );
    const cancel = await post(`/api/v1/builds/${build.id}/cancel`);
    expect(cancel.status).toBe(202);
    await waitFor(
      "canceled",
      async () =>
        (await json(await cp.api(`/api/v1/builds/${build.id}`, { token: cp.localToken }))).build.status ===
        "canceled",
    );
    expect(await workspaceState(cp, id)).toBe("failed");
    const again = await post(`/api/v1/builds/${build.id}/cancel`);
    expect(again.status).toBe(409);
    expect((await json(again)).error.code).toBe("build_finished");
  });

  it("answers an illegal transition with 409 and the current state, a duplicate with the same build", async () => {
    const id = await fresh(cp);
    await waitState(cp, id, "ready");
    // The stop build is held running until the requests below have been answered.
    let release!: () => void;
    cp.driver.gate = new Promise<void>((r) => {
      release = r;
    });
    const first = await json(await post(`/api/v1/workspaces/${id}/hibernate`));
    const dup = await post(`/api/v1/workspaces/${id}/hibernate`);
    expect(dup.status).toBe(200);
    const dupBody = await json(dup);
    expect(dupBody.duplicate).toBe(true);
    expect(dupBody.build.id).toBe(first.build.id);
    const wake = await post(`/api/v1/workspaces/${id}/wake`);
    expect(wake.status).toBe(409);
    expect(await json(wake)).toMatchObject({ error: { code: "invalid_transition", state: "hibernating" } });
    cp.driver.gate = null;
    release();
    await waitState(cp, id, "hibernated");
  });

  it("serializes 20 concurrent hibernate/wake requests into a valid sequence", async () => {
    const id = await fresh(cp);
    await waitState(cp, id, "ready");
    const inFlight = async () =>
      (
        await cp.deps.database.pool.query(
          "SELECT count(*)::int AS n FROM workspace_builds WHERE workspace_id = $1 AND status IN ('pending','running')",
          [id],
        )
      ).rows[0].n;
    const burst = () =>
      Promise.all([post(`/api/v1/workspaces/${id}/hibernate`), post(`/api/v1/workspaces/${id}/wake`)]);
    // Five rounds of two concurrent bursts: one while no build runs, one while the build it started is held
    // running by the driver. Each round is driven by what happened, not by a clock.
    const results: Response[] = [];
    for (let round = 0; round < 5; round++) {
      let release!: () => void;
      cp.driver.gate = new Promise<void>((r) => {
        release = r;
      });
      const calls = cp.driver.calls.length;
      results.push(...(await burst()));
      await waitFor("a build running in the driver", () => cp.driver.calls.length > calls);
      results.push(...(await burst()));
      cp.driver.gate = null;
      release();
      await waitFor("no build in flight", async () => (await inFlight()) === 0);
    }
    expect(results).toHaveLength(20);
    for (const r of results) expect([200, 202, 409]).toContain(r.status);
    expect(cp.driver.maxConcurrentPerWorkspace).toBe(1);
    const { rows } = await cp.deps.database.pool.query(
      "SELECT transition, status, started_at, finished_at FROM workspace_builds WHERE workspace_id = $1 ORDER BY number",
      [id],
    );
    for (let i = 1; i < rows.length; i++) {
      expect(rows[i].started_at.getTime()).toBeGreaterThanOrEqual(rows[i - 1].finished_at.getTime());
    }
    expect(rows.every((r) => r.status === "succeeded")).toBe(true);
    // A valid sequence alternates: every stop follows a start and every start follows a stop.
    const sequence = rows.map((r) => r.transition);
    expect(sequence.length).toBeGreaterThanOrEqual(1 + 5); // the create, then a build in every round
    sequence.forEach((t, i) => {
      if (i > 0) expect(t).not.toBe(sequence[i - 1]);
    });
  });

  it("rejects bad input naming the field, and 404s unknown workspaces", async () => {
    const bad = await cp.api("/api/v1/workspaces", {
      method: "POST",
      token: cp.localToken,
      json: { volumeSizeGb: 5 },
    });
    expect(bad.status).toBe(400);
    expect((await json(bad)).error.field).toBe("volumeSizeGb");
    const extra = await cp.api("/api/v1/workspaces", {
      method: "POST",
      token: cp.localToken,
      json: { size: 5 },
    });
    expect(extra.status).toBe(400);
    const unknown = await post("/api/v1/workspaces/3f2504e0-4f89-41d3-9a0c-0305e82c3301/wake");
    expect(unknown.status).toBe(404);
  });

  it("enforces one workspace per user", async () => {
    await fresh(cp);
    const second = await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: {} });
    expect(second.status).toBe(409);
    expect((await json(second)).error.code).toBe("workspace_limit");
  });

  it("exports build metrics", async () => {
    const text = await (await cp.api("/metrics")).text();
    expect(text).toMatch(
      /workspace_builds_total\{transition="stop",operation="hibernate",status="succeeded"\} \d+/,
    );
    expect(text).toMatch(
      /workspace_transition_failures_total\{transition="stop",operation="hibernate"\} [1-9]/,
    );
    // The first test created a workspace and woke it: one time-to-ready of each operation at least.
    expect(text).toMatch(/workspace_time_to_ready_seconds_count\{operation="create"\} [1-9]/);
    expect(text).toMatch(/workspace_time_to_ready_seconds_count\{operation="wake"\} [1-9]/);
    expect(text).toMatch(/workspace_build_queue_wait_seconds_bucket/);
  });
});
