/**
 * The local driver's process lifecycle, with a stand-in box agent (a small script that starts the
 * workspace's tmux server and answers /healthz) so only the driver is under test: what a stop and a
 * destroy leave running on this machine.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, it } from "vitest";
import type { BuildLog, WorkspaceSpec } from "../driver.ts";
import { LocalDriver } from "../local/driver.ts";
import { isAlive, processRef } from "../local/process.ts";
import { waitUntil } from "../pulumi/test/wait.ts";

const AGENT = `
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
// The panes get none of the agent's settings, as with the real agent (box/tmux/pane-environment.ts).
const pane = { PATH: process.env.PATH, HOME: process.env.HOME, LANG: "C.UTF-8" };
execFileSync("tmux", ["-S", process.env.BERTH_TMUX_SOCKET, "-f", "/dev/null", "new-session", "-d", "-s", "main", "sh"], { env: pane });
createServer((_req, res) => res.end(JSON.stringify({ lifecycle: "ready" })))
  .listen(Number(process.env.BERTH_AGENT_PORT), "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
`;

const log: BuildLog = { stage: () => {}, line: () => {} };

describe("local driver: processes", () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-local-driver-"));
  const agentEntry = join(dir, "agent.mjs");
  writeFileSync(agentEntry, AGENT);
  const driver = new LocalDriver({
    root: join(dir, "workspaces"),
    agentEntry,
    nodePath: process.execPath,
    stopGraceMs: 5_000,
  });
  const started: number[] = [];
  afterAll(() => {
    for (const pid of started) if (isAlive(pid)) process.kill(pid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  const spec = (workspaceId: string): WorkspaceSpec => ({
    workspaceId,
    ownerId: "owner",
    location: "local",
    serverType: "local",
    volumeSizeGb: 1,
    controlPlaneUrl: "http://127.0.0.1:1",
    secrets: { agentToken: "agent-token", ttydCredential: "user:pass", resticPassword: "restic" },
  });

  /** Starts in the workspace's pane what a user might leave behind: a nohup'd and a setsid'd process. */
  const leaveBehind = async (workspaceId: string): Promise<number[]> => {
    const socket = join(dir, "workspaces", workspaceId, "run", "tmux.sock");
    const pids = join(dir, `${workspaceId}.pids`);
    const line = [
      `nohup sh -c 'echo $$ >> ${pids}; exec sleep 1000' >/dev/null 2>&1 &`,
      `setsid sh -c 'echo $$ >> ${pids}; exec sleep 1001' >/dev/null 2>&1 &`,
    ].join(" ");
    execFileSync("tmux", ["-S", socket, "send-keys", "-t", "main", line, "Enter"]);
    const found = await waitUntil("both processes", () => {
      const list = readFileSync(pids, "utf8").trim().split("\n").map(Number);
      return list.length === 2 && list.every((pid) => isAlive(pid)) ? list : null;
    });
    started.push(...found);
    return found;
  };

  it("a stop ends what was started in the workspace's sessions, nohup'd or in a session of its own", async () => {
    const id = "stop-ends-everything";
    await driver.apply(spec(id), "start", log, new AbortController().signal);
    const pids = await leaveBehind(id);
    await driver.apply(spec(id), "stop", log, new AbortController().signal);
    await waitUntil("the workspace's processes to end", () => pids.every((pid) => !processRef(pid)), 10_000);
  });

  it("a destroy does too", async () => {
    const id = "destroy-ends-everything";
    await driver.apply(spec(id), "start", log, new AbortController().signal);
    const pids = await leaveBehind(id);
    await driver.destroy(spec(id), log);
    await waitUntil("the workspace's processes to end", () => pids.every((pid) => !processRef(pid)), 10_000);
  });
});
