/**
 * The agent as the local driver runs it: `node box/main.ts` as a child process with settings in the
 * environment and secrets in $CREDENTIALS_DIRECTORY, real tmux (a private socket), the built-in terminal
 * server, and a fake control plane on 127.0.0.1.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../terminal/ttyd-launcher.ts";
import { newFakeState, startFakeControlPlane } from "../testing/fake-control-plane.ts";
import { waitUntil } from "../testing/wait.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const TOKEN = "main-test-agent-token-abcdef0123456789";
const haveTmux = spawnSync("tmux", ["-V"]).status === 0;
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Waits for `cond`; a timeout also shows `detail` (the agent's output). */
async function waitFor(cond: () => boolean, what: string, detail: () => string = () => ""): Promise<void> {
  await waitUntil(cond, what).catch((err: Error) => {
    throw new Error(`${err.message}\n${detail()}`);
  });
}

async function launch(cpUrl: string, token = TOKEN) {
  const root = mkdtempSync(join(tmpdir(), "berth-main-"));
  const creds = join(mkdtempSync(join(tmpdir(), "berth-creds-")), "credentials");
  mkdirSync(creds, { mode: 0o700 });
  writeFileSync(join(creds, "agent-token"), `${token}\n`, { mode: 0o600 });
  writeFileSync(join(creds, "ttyd-credential"), "berth:terminal-secret", { mode: 0o600 });
  writeFileSync(join(creds, "restic-password"), "restic-secret", { mode: 0o600 });
  const socket = join(mkdtempSync(join(tmpdir(), "berth-sock-")), "tmux.sock");
  const agentPort = await freePort();
  const ttydPort = await freePort();
  const child: ChildProcess = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH,
      // As the local driver does: the box user's home is the workspace's, so no dotfile of this machine's
      // runs in the panes.
      HOME: join(root, "user", "home"),
      BERTH_WORKSPACE_ID: "ws-main-test",
      BERTH_CONTROL_PLANE_URL: cpUrl,
      BERTH_WORKSPACE_ROOT: root,
      BERTH_AGENT_PORT: String(agentPort),
      BERTH_TTYD_HOST: "127.0.0.1",
      BERTH_TTYD_PORT: String(ttydPort),
      BERTH_TMUX_SOCKET: socket,
      BERTH_TERMINAL: "builtin",
      CREDENTIALS_DIRECTORY: creds,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  cleanups.push(() => {
    child.kill("SIGKILL");
    spawnSync("tmux", ["-S", socket, "kill-server"]);
  });
  return { child, exited, root, creds, socket, agentPort, ttydPort, output: () => output };
}

describe("node box/main.ts", () => {
  it.skipIf(!haveTmux)(
    "starts, reports ready, creates the sessions asked for, and stops on SIGTERM",
    async () => {
      const state = newFakeState(TOKEN);
      state.desired = { sessions: ["e2e-1"] };
      const cp = await startFakeControlPlane(state);
      cleanups.push(() => cp.close());
      const agent = await launch(cp.url);

      await waitFor(
        () => state.heartbeats.some((h) => h.lifecycle === "ready"),
        "ready heartbeat",
        agent.output,
      );
      const ready = state.heartbeats.find((h) => h.lifecycle === "ready")!;
      expect(ready.agentVersion).toMatch(/^\d+\.\d+\.\d+/);
      expect(Date.parse(ready.readyAt!)).toBeGreaterThanOrEqual(Date.parse(ready.startedAt));
      expect(await (await fetch(`http://127.0.0.1:${agent.agentPort}/healthz`)).json()).toMatchObject({
        ok: true,
        terminal: { kind: "builtin", port: agent.ttydPort },
      });
      await new Promise<void>((resolve, reject) => {
        const s = connect(agent.ttydPort, "127.0.0.1", () => {
          s.end();
          resolve();
        });
        s.on("error", reject);
      });
      await waitFor(() => state.heartbeats.some((h) => h.sessions?.includes("e2e-1")), "session reported");
      expect(spawnSync("tmux", ["-S", agent.socket, "has-session", "-t", "=e2e-1"]).status).toBe(0);
      await waitFor(() => state.applied.some((e) => e.type === "log"), "agent logs shipped");

      agent.child.kill("SIGTERM");
      expect(await agent.exited).toBe(0);
      expect(state.heartbeats.at(-1)!.lifecycle).toBe("off");
      expect(
        state.applied
          .filter((e) => e.type === "lifecycle")
          .map((e) => e.type === "lifecycle" && e.payload.to),
      ).toEqual(["starting", "ready", "shutting_down", "off"]);
      // The sessions survive the agent: stopping them is the stop protocol's call, not an agent restart's.
      expect(spawnSync("tmux", ["-S", agent.socket, "has-session", "-t", "=e2e-1"]).status).toBe(0);
      expect(agent.output()).not.toContain(TOKEN);
      expect(agent.output()).not.toContain("terminal-secret");
    },
  );

  it.skipIf(!haveTmux)(
    "gives the panes nothing of the agent's: no BERTH_* setting, no credentials directory, no token file",
    async () => {
      const state = newFakeState(TOKEN);
      state.desired = { sessions: ["env-1"] };
      const cp = await startFakeControlPlane(state);
      cleanups.push(() => cp.close());
      const agent = await launch(cp.url);
      await waitFor(
        () => state.heartbeats.some((h) => h.sessions?.includes("env-1")),
        "session reported",
        agent.output,
      );
      // What a tool that Claude runs would do: dump its environment, then look for the token where the
      // agent was given it.
      const out = join(agent.root, "pane-probe.txt");
      const probe = `env > ${out}.tmp; cat ${join(agent.creds, "agent-token")} >> ${out}.tmp 2>&1; mv ${out}.tmp ${out}`;
      const shellPane = spawnSync("tmux", [
        "-S",
        agent.socket,
        "list-panes",
        "-s",
        "-t",
        "=env-1:",
        "-F",
        "#{pane_id} #{@berth-role}",
      ])
        .stdout.toString()
        .split("\n")
        .find((line) => line.endsWith(" shell"))!
        .split(" ")[0]!;
      spawnSync("tmux", ["-S", agent.socket, "send-keys", "-t", shellPane, "-l", probe]);
      spawnSync("tmux", ["-S", agent.socket, "send-keys", "-t", shellPane, "Enter"]);
      await waitFor(
        () => existsSync(out),
        "the pane's probe",
        () =>
          spawnSync("tmux", ["-S", agent.socket, "capture-pane", "-p", "-t", shellPane]).stdout.toString(),
      );
      const seen = readFileSync(out, "utf8");
      expect(seen).toMatch(/^PATH=/m); // the probe ran and dumped a real environment
      expect(seen).not.toMatch(/^(BERTH_\w*|CREDENTIALS_DIRECTORY)=/m);
      expect(seen).toContain("No such file or directory");
      expect(seen).not.toContain(TOKEN);
      expect(existsSync(agent.creds), "the local agent keeps its secrets in memory only").toBe(false);
    },
  );

  it("says clearly that the control plane refuses its token, without printing it", async () => {
    const state = newFakeState("the-right-token-which-agent-lacks");
    const cp = await startFakeControlPlane(state);
    cleanups.push(() => cp.close());
    const agent = await launch(cp.url);
    await waitFor(
      () => agent.output().includes("rejected the agent token"),
      "auth error in logs",
      agent.output,
    );
    expect(agent.output()).toMatch(
      /control plane rejected the agent token \(HTTP 401: unknown agent token\)/,
    );
    expect(agent.output()).not.toContain(TOKEN);
    expect(state.heartbeats).toHaveLength(0);
    agent.child.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
  });

  it("exits 2 naming the problem when secrets are missing, and prints help", async () => {
    const r = spawnSync(process.execPath, [MAIN], {
      env: {
        PATH: process.env.PATH,
        BERTH_WORKSPACE_ID: "ws-x",
        BERTH_CONTROL_PLANE_URL: "http://127.0.0.1:1",
      },
      encoding: "utf8",
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe("berth-agent: CREDENTIALS_DIRECTORY is not set: the agent has no secrets\n");
    const help = spawnSync(process.execPath, [MAIN, "--help"], { encoding: "utf8" });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("CREDENTIALS_DIRECTORY");
  });
});
