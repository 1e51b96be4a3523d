/**
 * End to end on this machine: the API, the build queue, the local driver, a real box agent, real tmux and
 * the agent's ttyd-protocol terminal endpoint, on real Postgres.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TtydClient } from "../../box/terminal/client.ts";
import { isAlive } from "../../stacks/local/process.ts";
import { readWorkspaceSecret } from "../store/secrets.ts";
import { json } from "../test/control-plane.ts";
import { startLocalControlPlane } from "../test/local-control-plane.ts";
import { waitFor } from "../test/wait.ts";

describe("a local workspace, end to end", async () => {
  const cp = await startLocalControlPlane();
  const { pool } = cp.deps.database;
  const token = cp.localToken;
  const state = async (id: string) =>
    (await pool.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state;
  const idle = async (id: string, wanted: string) =>
    waitFor(
      `workspace ${wanted}`,
      async () => {
        const { rows } = await pool.query(
          `SELECT w.state, (SELECT count(*)::int FROM workspace_builds b WHERE b.workspace_id = w.id AND b.status IN ('pending','running')) AS active
         FROM workspaces w WHERE w.id = $1`,
          [id],
        );
        return rows[0].state === wanted && rows[0].active === 0;
      },
      40_000,
    );
  const hasSession = (socket: string, name: string) => {
    try {
      execFileSync("tmux", ["-S", socket, "has-session", "-t", `=${name}`], { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  };

  let workspaceId = "";
  const terminal = async (session: string) => {
    const { rows } = await pool.query(
      "SELECT public_ip, terminal_port FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
      [workspaceId],
    );
    const credential = await readWorkspaceSecret(
      cp.deps.database.db,
      cp.deps.secretBox,
      workspaceId,
      "ttyd-credential",
    );
    return TtydClient.connect({
      url: `ws://${rows[0].public_ip}:${rows[0].terminal_port}/ws`,
      session,
      credential: credential!,
      size: { columns: 100, rows: 30 },
    });
  };

  it("creates a workspace that reaches ready with a live agent", async () => {
    const res = await cp.api("/api/v1/workspaces", { method: "POST", token, json: { name: "e2e" } });
    expect(res.status).toBe(202);
    workspaceId = (await json(res)).workspace.id;
    await idle(workspaceId, "ready");
    const agent = cp.agentState(workspaceId)!;
    expect(isAlive(agent.pid)).toBe(true);
    const volume = join(cp.workspacesRoot, workspaceId, "volume");
    for (const dir of [
      "user/home",
      "user/projects",
      "user/.ssh",
      "user/.claude",
      "system/logs",
      "system/backups",
      "system/state",
    ]) {
      expect(existsSync(join(volume, dir))).toBe(true);
    }
    const hooks = JSON.parse(readFileSync(join(volume, "user/.claude/settings.json"), "utf8"));
    expect(Object.keys(hooks.hooks)).toEqual(expect.arrayContaining(["Notification", "Stop"]));
  });

  it("creates two sessions that the agent turns into tmux sessions", async () => {
    for (const name of ["main", "second"]) {
      const res = await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, {
        method: "POST",
        token,
        json: { name },
      });
      expect(res.status).toBe(201);
    }
    const socket = cp.agentState(workspaceId)!.tmuxSocket;
    await waitFor(
      "both tmux sessions",
      () => hasSession(socket, "main") && hasSession(socket, "second"),
      30_000,
    );
    // The session exists a moment before its layout is complete: wait for the three panes.
    const paneCount = () =>
      execFileSync("tmux", ["-S", socket, "list-panes", "-t", "=main", "-F", "#{pane_index}"], {
        encoding: "utf8",
      })
        .trim()
        .split("\n").length;
    await waitFor("three panes", () => paneCount() === 3);
  });

  it("types through the terminal endpoint, sees the echo, and resizes", async () => {
    const client = await terminal("main");
    try {
      // The command line itself never contains the answer, so only the shell's output can match.
      client.type("echo $((6*7))-hi\r");
      await client.waitFor("42-hi").catch((err) => {
        throw new Error(`${err.message}; screen: ${JSON.stringify(client.text.slice(-500))}`);
      });
      client.type("echo keep > e2e-file.txt\r");
      client.resize({ columns: 120, rows: 40 });
      const socket = cp.agentState(workspaceId)!.tmuxSocket;
      await waitFor("resize reaches tmux", () =>
        execFileSync(
          "tmux",
          ["-S", socket, "list-clients", "-t", "=main", "-F", "#{client_width}x#{client_height}"],
          {
            encoding: "utf8",
          },
        ).includes("120x40"),
      );
    } finally {
      client.close();
    }
    await waitFor("file written", () =>
      existsSync(join(cp.workspacesRoot, workspaceId, "volume/user/projects/e2e-file.txt")),
    );
  });

  it("turns a Claude hook into one notification and drops the duplicate OSC 9", async () => {
    const agent = cp.agentState(workspaceId)!;
    const hook = await fetch(`http://127.0.0.1:${agent.agentPort}/hooks/claude`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-berth-session": "main" },
      body: JSON.stringify({
        hook_event_name: "Notification",
        notification_type: "permission_prompt",
        message: "Claude needs your permission to use Bash",
      }),
    });
    expect(hook.status).toBeLessThan(300);
    // Claude also rings the terminal for the same moment; pipe-pane captures it.
    execFileSync("tmux", [
      "-S",
      agent.tmuxSocket,
      "send-keys",
      "-t",
      "=main:0.0",
      "printf '\\033]9;Claude needs your permission\\007'",
      "Enter",
    ]);
    await waitFor(
      "the notification row",
      async () =>
        (await pool.query("SELECT 1 FROM notifications WHERE workspace_id = $1", [workspaceId])).rowCount ===
        1,
      20_000,
    );
    // Had the agent kept the duplicate, it would be held for a while and then sent; instead of waiting that
    // out, send a later terminal signal that is sure to arrive. The duplicate is in main's capture before
    // the marker is printed, the agent reads each capture in order and holds every terminal signal equally
    // long, and the control plane applies the agent's events in order: once the marker's row is there, a
    // kept duplicate's would be too.
    const logs = join(cp.workspacesRoot, workspaceId, "volume/system/logs/sessions");
    await waitFor("the OSC 9 in main's capture", () =>
      readFileSync(join(logs, "main.log"), "latin1").includes("\x1b]9;Claude needs your permission\x07"),
    );
    execFileSync("tmux", [
      "-S",
      agent.tmuxSocket,
      "send-keys",
      "-t",
      "=second:0.0",
      "printf '\\033]9;marker from second\\007'",
      "Enter",
    ]);
    const rows = await waitFor(
      "the marker's notification",
      async () => {
        const { rows } = await pool.query(
          `SELECT n.kind, n.title, s.name AS session FROM notifications n
           LEFT JOIN sessions s ON s.id = n.session_id WHERE n.workspace_id = $1 ORDER BY n.created_at`,
          [workspaceId],
        );
        return rows.some((r) => r.session === "second") && rows;
      },
      20_000,
    );
    expect(rows).toEqual([
      { kind: "permission_prompt", title: "Claude needs your permission", session: "main" },
      { kind: "osc", title: "marker from second", session: "second" },
    ]);
  });

  it("hibernates: the agent stops and the files stay", async () => {
    const pid = cp.agentState(workspaceId)!.pid;
    await cp.api(`/api/v1/workspaces/${workspaceId}/hibernate`, { method: "POST", token });
    await idle(workspaceId, "hibernated");
    expect(isAlive(pid)).toBe(false);
    expect(cp.agentState(workspaceId)).toBeNull();
    expect(
      readFileSync(join(cp.workspacesRoot, workspaceId, "volume/user/projects/e2e-file.txt"), "utf8"),
    ).toBe("keep\n");
    const inst = await pool.query(
      "SELECT count(*)::int AS open FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
      [workspaceId],
    );
    expect(inst.rows[0].open).toBe(0);
  });

  it("wakes with the same files and the sessions recreated", async () => {
    await cp.api(`/api/v1/workspaces/${workspaceId}/wake`, { method: "POST", token });
    await idle(workspaceId, "ready");
    const socket = cp.agentState(workspaceId)!.tmuxSocket;
    await waitFor(
      "sessions recreated",
      () => hasSession(socket, "main") && hasSession(socket, "second"),
      30_000,
    );
    const client = await terminal("main");
    try {
      const mark = client.mark();
      client.type("cat e2e-file.txt\r");
      await client.waitFor((text) => text.includes("keep"), { since: mark });
    } finally {
      client.close();
    }
  });

  it("destroys the workspace and its directory", async () => {
    const pid = cp.agentState(workspaceId)!.pid;
    await cp.api(`/api/v1/workspaces/${workspaceId}`, { method: "DELETE", token });
    await waitFor("destroyed", async () => (await state(workspaceId)) === "destroyed", 30_000);
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(join(cp.workspacesRoot, workspaceId))).toBe(false);
  });
});
