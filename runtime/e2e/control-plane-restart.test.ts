/**
 * A control-plane restart in local mode: box agents are detached (like VMs, they outlive the control
 * plane), so the new process must pick them up as they are — no orphan, no second agent.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { isAlive } from "../../stacks/local/process.ts";
import { json } from "../test/control-plane.ts";
import { startLocalControlPlane } from "../test/local-control-plane.ts";
import { waitFor } from "../test/wait.ts";

describe("a control-plane restart with running local boxes", async () => {
  const first = await startLocalControlPlane();
  const databaseUrl = first.deps.database.url;
  const port = new URL(first.url).port;

  it("keeps the agent running and lets the new control plane drive it", async () => {
    const created = await json(
      await first.api("/api/v1/workspaces", { method: "POST", token: first.localToken, json: {} }),
    );
    const id: string = created.workspace.id;
    const { pool } = first.deps.database;
    await waitFor(
      "ready",
      async () =>
        (await pool.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state === "ready",
      30_000,
    );
    const agent = first.agentState(id)!;

    await first.close();
    expect(isAlive(agent.pid)).toBe(true); // the box did not go down with the control plane

    // Same database, same workspaces directory, same address: what `npm start` does after a restart.
    const second = await startLocalControlPlane(
      { DATABASE_URL: databaseUrl, BERTH_PORT: port, BERTH_LOCAL_TOKEN: first.localToken },
      { root: first.workspacesRoot },
    );
    const pool2 = second.deps.database.pool;
    const beat = async () =>
      (
        await pool2.query(
          "SELECT last_heartbeat_at FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
          [id],
        )
      ).rows[0].last_heartbeat_at as Date;
    const before = await beat();
    await waitFor("a heartbeat reaching the new control plane", async () => (await beat()) > before, 20_000);

    const observed = await second.deps.driver.observe(id);
    expect(observed).toMatchObject({ running: true, serverId: `local-${agent.pid}` });

    // Waking a running box is a duplicate: no second agent.
    const wake = await second.api(`/api/v1/workspaces/${id}/wake`, {
      method: "POST",
      token: second.localToken,
    });
    expect(wake.status).toBe(200);
    expect(second.agentState(id)!.pid).toBe(agent.pid);

    // The agent takes desired state from the new control plane.
    await second.api(`/api/v1/workspaces/${id}/sessions`, {
      method: "POST",
      token: second.localToken,
      json: { name: "after" },
    });
    await waitFor(
      "session from the new control plane",
      () => {
        try {
          execFileSync("tmux", ["-S", agent.tmuxSocket, "has-session", "-t", "=after"], { stdio: "ignore" });
          return true;
        } catch {
          return false;
        }
      },
      20_000,
    );

    await second.api(`/api/v1/workspaces/${id}/hibernate`, { method: "POST", token: second.localToken });
    await waitFor(
      "hibernated",
      async () =>
        (await pool2.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state ===
        "hibernated",
      30_000,
    );
    expect(isAlive(agent.pid)).toBe(false);
  });
});
