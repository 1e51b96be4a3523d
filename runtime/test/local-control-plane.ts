import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { LocalDriver, type LocalDriverOptions } from "../../stacks/local/driver.ts";
import { AGENT_ENTRY } from "../app/drivers.ts";
import type { StartOptions } from "../app/server.ts";
import { freePort } from "../store/embedded.ts";
import { startTestControlPlane, type TestControlPlane } from "./control-plane.ts";
import { waitFor } from "./wait.ts";

export interface LocalTestControlPlane extends TestControlPlane {
  localDriver: LocalDriver;
  workspacesRoot: string;
  /** The running agent's state file (pid, ports, tmux socket) for a workspace. */
  agentState(
    workspaceId: string,
  ): { pid: number; terminalPort: number; agentPort: number; tmuxSocket: string } | null;
}

/**
 * A control plane with the real local driver: real box agents as child processes, real tmux. Agents are
 * detached by design (they outlive a control plane), so this kills every one it started after the file.
 */
export async function startLocalControlPlane(
  env: Record<string, string> = {},
  options: {
    root?: string;
    start?: StartOptions;
    agentEnv?: Record<string, string>;
    driver?: Partial<LocalDriverOptions>;
  } = {},
): Promise<LocalTestControlPlane> {
  const root = options.root ?? mkdtempSync(join(tmpdir(), "berth-ws-"));
  const localDriver = new LocalDriver({
    root,
    agentEntry: AGENT_ENTRY,
    nodePath: process.execPath,
    readyTimeoutMs: 30_000,
    ...options.driver,
    agentEnv: {
      BERTH_TERMINAL: "builtin",
      BERTH_AGENT_LOG_LEVEL: "debug",
      ...options.driver?.agentEnv,
      ...options.agentEnv,
    },
  });
  const cp = await startTestControlPlane(env, { ...options.start, driver: localDriver });
  const agentState = (id: string) => {
    try {
      return JSON.parse(readFileSync(join(root, id, "run", "agent.json"), "utf8"));
    } catch {
      return null;
    }
  };
  afterAll(() => killLocalBoxes(root));
  return { ...cp, localDriver, workspacesRoot: root, agentState };
}

/**
 * Ends every box agent and tmux server under a local driver's root, and removes it. Agents are detached by
 * design (they outlive a control plane), so a test file must end the ones it started. Panes are killed
 * before their server: a shell that tmux merely hangs up on writes its history into the box user's home,
 * under this root, while the root is being removed (rmSync then fails with ENOTEMPTY).
 */
export function killLocalBoxes(root: string): void {
  for (const id of readdirSync(root)) {
    try {
      const state = JSON.parse(readFileSync(join(root, id, "run", "agent.json"), "utf8"));
      process.kill(-state.pid, "SIGKILL");
    } catch {}
    const tmux = (...args: string[]) =>
      execFileSync("tmux", ["-S", join(root, id, "run", "tmux.sock"), ...args], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      });
    try {
      for (const pid of tmux("list-panes", "-a", "-F", "#{pane_pid}").split("\n").filter(Boolean)) {
        try {
          process.kill(-Number(pid), "SIGKILL");
        } catch {}
      }
    } catch {}
    try {
      tmux("kill-server");
    } catch {}
  }
  // A process that was already exiting may still remove or write a file; rmSync retries ENOTEMPTY.
  rmSync(root, { recursive: true, force: true, maxRetries: 5 });
}

/**
 * Opens session `dev` in a ready local workspace and starts a dev server (python's http.server) in it on a
 * free loopback port; resolves once the box agent has detected it and the API lists it as a preview.
 */
export async function startDevServerInWorkspace(
  cp: LocalTestControlPlane,
  workspaceId: string,
): Promise<{
  port: number;
  preview: { id: string; port: number; source: string; framework: string | null };
}> {
  const token = cp.localToken;
  await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, {
    method: "POST",
    token,
    json: { name: "dev" },
  });
  const socket = cp.agentState(workspaceId)!.tmuxSocket;
  await waitFor("the tmux session", () => {
    try {
      execFileSync("tmux", ["-S", socket, "has-session", "-t", "=dev"], { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  });
  const port = await freePort();
  const command = `python3 -m http.server ${port} --bind 127.0.0.1`;
  execFileSync("tmux", ["-S", socket, "send-keys", "-t", "=dev:0.0", command, "Enter"]);
  const preview = await waitFor(
    "the detected preview",
    async () => {
      const res = await cp.api(`/api/v1/workspaces/${workspaceId}/previews`, { token });
      const list = (await res.json()) as {
        previews: Array<{ id: string; port: number; source: string; framework: string | null }>;
      };
      return list.previews.find((p) => p.port === port);
    },
    20_000,
  );
  return { port, preview };
}

/** Creates a workspace through the API and waits until the local driver has it ready; returns its id. */
export async function createReadyWorkspace(cp: LocalTestControlPlane, name = "workspace"): Promise<string> {
  const res = await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: { name } });
  const workspaceId = ((await res.json()) as { workspace: { id: string } }).workspace.id;
  const { pool } = cp.deps.database;
  await waitFor(
    "the workspace ready",
    async () =>
      (await pool.query("SELECT state FROM workspaces WHERE id = $1", [workspaceId])).rows[0].state ===
      "ready",
    40_000,
  );
  return workspaceId;
}
