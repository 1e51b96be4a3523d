import { spawn } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { Agent, type AgentOptions, agentPortFile } from "../agent.ts";
import { agentSettingsSchema, type BootConfig } from "../boot-config.ts";
import type { SessionManager } from "../home/desired-state.ts";
import { mountVolume, VolumeTimeoutError } from "../layout/volume.ts";
import { freePort } from "../terminal/ttyd-launcher.ts";
import { newFakeState, startFakeControlPlane } from "../testing/fake-control-plane.ts";
import { waitUntil } from "../testing/wait.ts";

const TOKEN = "agent-test-token-0123456789abcdef";
const log = pino({ level: "silent" });
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const waitFor = (cond: () => boolean, what: string) => waitUntil(cond, what);

class MemorySessions implements SessionManager {
  names = new Set<string>();
  async ensure(n: string) {
    this.names.add(n);
  }
  async list() {
    return [...this.names].map((name) => ({ name }));
  }
  async kill(n: string) {
    this.names.delete(n);
  }
  async sendKeys() {}
}

async function setup(
  overrides: Partial<AgentOptions> = {},
  rootPrep?: (root: string) => void,
  settings: Record<string, string> = {},
  existingRoot?: string,
) {
  const state = newFakeState(TOKEN);
  const cp = await startFakeControlPlane(state);
  cleanups.push(() => cp.close());
  const root = existingRoot ?? mkdtempSync(join(tmpdir(), "berth-agent-"));
  rootPrep?.(root);
  const agentPort = await freePort();
  const config: BootConfig = {
    settings: agentSettingsSchema.parse({
      BERTH_WORKSPACE_ID: "ws-test",
      BERTH_CONTROL_PLANE_URL: cp.url,
      BERTH_WORKSPACE_ROOT: root,
      BERTH_AGENT_PORT: String(agentPort),
      ...settings,
    }),
    credentials: { "agent-token": TOKEN, "ttyd-credential": "u:p", "restic-password": "r" },
  };
  const sessions = new MemorySessions();
  let terminalClosed = false;
  const agent = new Agent({
    config,
    mode: "local",
    log,
    boxUser: null,
    agentOwner: null,
    sessions,
    startTerminal: async () => ({
      kind: "test",
      port: 1,
      close: async () => {
        terminalClosed = true;
      },
    }),
    previewOwner: { ancestors: () => [process.pid] },
    heartbeatIntervalMs: 100,
    previewIntervalMs: 100,
    tailPollMs: 20,
    dedupe: { holdMs: 200, windowMs: 5000 },
    fallbackStateDir: join(mkdtempSync(join(tmpdir(), "berth-fallback-")), "state"),
    ...overrides,
  });
  cleanups.push(() => agent.lifecycle !== "off" && agent.shutdown(2000));
  return { state, cp, root, agent, agentPort, sessions, terminalClosed: () => terminalClosed };
}

const lifecycleEvents = (state: ReturnType<typeof newFakeState>) =>
  state.applied.flatMap((e) => (e.type === "lifecycle" ? [`${e.payload.from}>${e.payload.to}`] : []));

describe("Agent (local mode, against a fake control plane)", () => {
  it("comes up ready, reports notifications once and previews, and shuts down cleanly", async () => {
    const { state, root, agent, agentPort, terminalClosed } = await setup();
    state.desired = { sessions: ["main"] };
    await agent.start();
    expect(agent.lifecycle).toBe("ready");
    expect(statSync(join(root, "user", ".ssh")).mode & 0o777).toBe(0o700);
    expect(readFileSync(join(root, "user", ".claude", "settings.json"), "utf8")).toContain(
      agentPortFile(root),
    );
    expect(readFileSync(agentPortFile(root), "utf8")).toBe(`${agentPort}\n`);
    await waitFor(
      () => state.heartbeats.some((h) => h.lifecycle === "ready" && h.readyAt),
      "ready heartbeat",
    );
    await waitFor(() => lifecycleEvents(state).includes("starting>ready"), "lifecycle events");
    expect(lifecycleEvents(state)).toEqual(["created>starting", "starting>ready"]);

    const health = await (await fetch(`http://127.0.0.1:${agentPort}/healthz`)).json();
    expect(health).toMatchObject({ ok: true, lifecycle: "ready", terminal: { kind: "test" } });

    // A hook post and the duplicate OSC 9 from the same session: one notification reaches the control plane.
    // (A capture file that appears while the agent runs is read from its start: no need to wait for the tailer.)
    writeFileSync(join(root, "system", "logs", "sessions", "main.log"), "");
    const res = await fetch(`http://127.0.0.1:${agentPort}/hooks/claude`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-berth-session": "main" },
      body: JSON.stringify({
        hook_event_name: "Notification",
        notification_type: "idle_prompt",
        message: "waiting",
      }),
    });
    expect(await res.json()).toEqual({ result: "emitted" });
    appendFileSync(
      join(root, "system", "logs", "sessions", "main.log"),
      "\x1b]9;Claude is waiting for your input\x07",
    );
    await waitFor(() => state.applied.some((e) => e.type === "notification"), "notification delivered");
    // The agent's own count says it read the OSC 9 and dropped it as the hook's duplicate (a terminal signal it
    // kept would be held, not counted): nothing more can come of it.
    await waitFor(
      () => state.heartbeats.some((h) => (h.metrics.notificationsDeduped ?? 0) >= 1),
      "the OSC 9 deduped",
    );
    const notes = state.applied.filter((e) => e.type === "notification");
    expect(notes).toHaveLength(1);
    expect(notes[0]!.payload).toMatchObject({ kind: "idle_prompt", session: "main", source: "hook" });

    // A dev server started inside the workspace is detected and reported.
    const server: Server = createServer((_q, r) => r.end());
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    await waitFor(
      () =>
        state.applied.some(
          (e) => e.type === "preview" && e.payload.port === port && e.payload.state === "open",
        ),
      "preview open",
    );
    await new Promise((r) => server.close(r));
    await waitFor(
      () =>
        state.applied.some(
          (e) => e.type === "preview" && e.payload.port === port && e.payload.state === "closed",
        ),
      "preview closed",
    );
    await waitFor(() => state.heartbeats.some((h) => h.sessions?.includes("main")), "sessions converged");

    const { drained } = await agent.shutdown(5000);
    expect(drained).toBe(true);
    expect(terminalClosed()).toBe(true);
    expect(state.heartbeats.at(-1)!.lifecycle).toBe("off");
    expect(lifecycleEvents(state)).toEqual([
      "created>starting",
      "starting>ready",
      "ready>shutting_down",
      "shutting_down>off",
    ]);
    const seqs = state.applied.map((e) => e.seq);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1)); // every event once, in order
    await expect(fetch(`http://127.0.0.1:${agentPort}/healthz`)).rejects.toThrow();
  });

  it("the hook command of a running Claude reaches the agent after it restarts on another port", async () => {
    const first = await setup();
    await first.agent.start();
    expect(first.agent.lifecycle).toBe("ready");
    // The command Claude loaded from settings.json at its start; it keeps running it across agent restarts.
    const settings = JSON.parse(readFileSync(join(first.root, "user", ".claude", "settings.json"), "utf8"));
    const command: string = settings.hooks.UserPromptSubmit[0].hooks[0].command;
    expect(settings.hooks.Stop[0].hooks[0].command).toBe(command);
    // Claude runs it in a tmux pane; a `tmux` that names the pane's session stands in for the real one here.
    const bin = mkdtempSync(join(tmpdir(), "berth-fake-tmux-"));
    writeFileSync(join(bin, "tmux"), "#!/bin/sh\necho main\n");
    chmodSync(join(bin, "tmux"), 0o755);
    const fire = async (event: Record<string, unknown>) => {
      const child = spawn("sh", ["-c", command], {
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, TMUX_PANE: "%0" },
        stdio: ["pipe", "ignore", "inherit"],
      });
      child.stdin!.end(JSON.stringify({ session_id: "c1", cwd: "/w", ...event }));
      expect(await new Promise((resolve) => child.once("exit", resolve))).toBe(0);
    };
    const states = (s: ReturnType<typeof newFakeState>) =>
      s.applied.flatMap((e) => (e.type === "claude_state" ? [e.payload] : []));

    await fire({ hook_event_name: "UserPromptSubmit", prompt: "fix the tests" });
    await waitFor(() => states(first.state).length === 1, "working reported");
    expect(states(first.state)).toEqual([{ session: "main", state: "working", detail: null }]);
    await first.agent.shutdown(2000);

    // The agent restarts on another port (as the local driver does at every start); the same command finds it.
    const second = await setup({}, undefined, {}, first.root);
    expect(second.agentPort).not.toBe(first.agentPort);
    await second.agent.start();
    expect(readFileSync(agentPortFile(first.root), "utf8")).toBe(`${second.agentPort}\n`);
    await fire({ hook_event_name: "Stop", stop_hook_active: false });
    await waitFor(
      () => states(second.state).length === 1 && second.state.applied.some((e) => e.type === "notification"),
      "idle and its notification reported to the restarted agent",
    );
    expect(states(second.state)).toEqual([{ session: "main", state: "idle", detail: null }]);
    expect(second.state.applied.filter((e) => e.type === "notification")).toHaveLength(1);
  });

  it("stays up in start_error, naming the path, when the layout cannot be made; user data untouched", async () => {
    const { state, root, agent } = await setup({}, (r) => {
      mkdirSync(join(r, "user"));
      writeFileSync(join(r, "user", "projects"), "not a directory");
    });
    await agent.start();
    expect(agent.lifecycle).toBe("start_error");
    expect(agent.lastError).toBe(
      `layout: workspace layout: ${join(root, "user", "projects")}: is a file where a directory belongs; move it away (it is not deleted for you)`,
    );
    await waitFor(() => state.heartbeats.some((h) => h.lifecycle === "start_error"), "start_error heartbeat");
    expect(state.heartbeats.find((h) => h.lifecycle === "start_error")!.lastError).toMatch(
      /user\/projects: is a file/,
    );
    await waitFor(() => lifecycleEvents(state).includes("starting>start_error"), "lifecycle event");
    expect(readFileSync(join(root, "user", "projects"), "utf8")).toBe("not a directory");
    expect(existsSync(join(root, "system"))).toBe(false);
  });

  it("reports start_timeout when the volume never appears (VM mode, mount injected)", async () => {
    const { state, agent } = await setup(
      {
        mode: "vm",
        boxUser: { uid: 0, gid: 0 },
        mount: async () => {
          throw new VolumeTimeoutError(
            "volume device /dev/disk/by-id/scsi-0HC_Volume_1 did not appear within 120 s",
          );
        },
      },
      undefined,
      { BERTH_VOLUME_DEVICE: "/dev/disk/by-id/scsi-0HC_Volume_1" },
    );
    await agent.start();
    expect(agent.lifecycle).toBe("start_timeout");
    await waitFor(
      () => state.heartbeats.some((h) => h.lifecycle === "start_timeout"),
      "start_timeout heartbeat",
    );
    expect(state.heartbeats.at(-1)!.lastError).toMatch(/^mount volume: volume device .* did not appear/);
  });

  it("keeps heartbeating when tmux lists a session name it could not have created", async () => {
    const { state, agent, sessions } = await setup();
    sessions.names.add("main");
    sessions.names.add("made_by_hand");
    await agent.start();
    await waitFor(() => state.heartbeats.some((h) => h.sessions?.includes("main")), "sessions heartbeat");
    expect(state.heartbeats.at(-1)!.sessions).toEqual(["main"]);
  });

  it("stops promptly when SIGTERM arrives while it still waits for the volume", async () => {
    let waiting!: () => void;
    const inVolumeWait = new Promise<void>((r) => {
      waiting = r;
    });
    const { state, agent } = await setup(
      {
        mode: "vm",
        boxUser: { uid: 0, gid: 0 },
        // Far beyond the test's timeout: finishing at all proves the shutdown cut the wait short.
        volumeWaitMs: 60 * 60_000,
        mount: (options) => {
          waiting();
          return mountVolume(options);
        },
      },
      undefined,
      {
        BERTH_VOLUME_DEVICE: "/dev/disk/by-id/scsi-0HC_Volume_does-not-exist",
      },
    );
    const started = agent.start();
    await inVolumeWait;
    await agent.shutdown(3000);
    await started;
    expect(agent.lifecycle).toBe("off");
    expect(state.heartbeats.at(-1)!.lifecycle).toBe("off");
    expect(lifecycleEvents(state)).toEqual([
      "created>starting",
      "starting>shutting_down",
      "shutting_down>off",
    ]);
  });

  it("refuses to start a VM without its box user rather than hand the tree to root", async () => {
    const { agent } = await setup(
      { mode: "vm", boxUserError: "workspace layout: claude: the box user does not exist" },
      undefined,
      {
        BERTH_VOLUME_DEVICE: "/dev/disk/by-id/scsi-0HC_Volume_1",
      },
    );
    await agent.start();
    expect(agent.lifecycle).toBe("start_error");
    expect(agent.lastError).toBe("box user: workspace layout: claude: the box user does not exist");
  });
});
