import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { LocalDriver } from "../../stacks/local/driver.ts";
import { AGENT_ENTRY } from "../app/drivers.ts";
import type { StartOptions } from "../app/server.ts";
import { startTestControlPlane, type TestControlPlane } from "./control-plane.ts";

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
  options: { root?: string; start?: StartOptions } = {},
): Promise<LocalTestControlPlane> {
  const root = options.root ?? mkdtempSync(join(tmpdir(), "berth-ws-"));
  const localDriver = new LocalDriver({
    root,
    agentEntry: AGENT_ENTRY,
    nodePath: process.execPath,
    readyTimeoutMs: 30_000,
    agentEnv: { BERTH_TERMINAL: "builtin", BERTH_AGENT_LOG_LEVEL: "debug" },
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
 * design (they outlive a control plane), so a test file must end the ones it started.
 */
export function killLocalBoxes(root: string): void {
  for (const id of readdirSync(root)) {
    try {
      const state = JSON.parse(readFileSync(join(root, id, "run", "agent.json"), "utf8"));
      process.kill(-state.pid, "SIGKILL");
    } catch {}
    try {
      execFileSync("tmux", ["-S", join(root, id, "run", "tmux.sock"), "kill-server"], { stdio: "ignore" });
    } catch {}
  }
  rmSync(root, { recursive: true, force: true });
}
