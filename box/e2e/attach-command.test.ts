/**
 * ttyd's attach command, run for real (the local launcher's guard script; packer's berth-tmux-attach is the
 * same steps for the image) in a pty against a real tmux server and the agent's real loopback endpoint.
 * ttyd itself is not needed for what is tested here: ttyd only runs this command with the session name.
 */
import { type IPty, spawn } from "@lydell/node-pty";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LoopbackServer, startLoopbackServer } from "../notifications/loopback-server.ts";
import { ATTACH_ENDED_MARKER } from "../terminal/protocol.ts";
import { attachGuardScript } from "../terminal/ttyd-launcher.ts";
import { makeTestTmux, type TestTmux, TMUX_MISSING } from "../testing/tmux.ts";
import { waitUntil } from "../testing/wait.ts";
import { tmuxEnv, tmuxServerArgs } from "../tmux/tmux-command.ts";

const suite = TMUX_MISSING ? describe.skip : describe;
suite(`ttyd's attach command${TMUX_MISSING ? ` (skipped: ${TMUX_MISSING})` : ""}`, () => {
  let t: TestTmux;
  let agent: LoopbackServer;
  let ensured: string[];
  const ptys: IPty[] = [];

  beforeAll(async () => {
    t = makeTestTmux("berth-attach-");
    ensured = [];
    agent = await startLoopbackServer({
      port: 0,
      onHook: () => "ignored",
      health: () => ({ ok: true }),
      onEnsureSession: (name) => {
        ensured.push(name);
        return t.sessions.ensure(name);
      },
    });
  });
  afterAll(async () => {
    for (const pty of ptys) pty.kill("SIGKILL");
    await agent.close();
    await t.cleanup();
  });

  /** What ttyd does for `?arg=<session>`: the command with the name appended, in a fresh pty. */
  const attach = (session: string, ensureUrl = `http://127.0.0.1:${agent.port}/sessions`) => {
    const script = attachGuardScript(["tmux", ...tmuxServerArgs({ socket: t.socket })], ensureUrl);
    const pty = spawn("/bin/sh", ["-c", script, "berth-attach", session], {
      cols: 120,
      rows: 40,
      env: tmuxEnv() as Record<string, string>,
    });
    ptys.push(pty);
    let output = "";
    let exited = false;
    pty.onData((d) => (output += d));
    pty.onExit(() => (exited = true));
    return { pty, output: () => output, exited: () => exited };
  };
  const roles = async (session: string) => Object.keys(await t.sessions.panes(session)).sort();

  it("finds the three panes on a first attach, before the agent's own pass ever ran", async () => {
    const first = attach("first-1");
    await waitUntil(async () => (await t.sessions.has("first-1")) && first.output().length > 0, "the attach");
    expect(ensured).toContain("first-1");
    expect(await roles("first-1")).toEqual(["claude", "logs", "shell"]);
  });

  it("after a kill, says the session ended and waits to be hung up; a reconnect gets the layout again", async () => {
    const before = attach("killed-1");
    await waitUntil(() => t.sessions.has("killed-1"), "the session");
    await waitUntil(() => before.output().length > 0, "tmux drawing");
    await t.sessions.kill("killed-1");
    await waitUntil(() => before.output().includes(ATTACH_ENDED_MARKER), "the end-of-attach marker");
    // Still there, so that ttyd does not drop the marker with a dying process's last output.
    expect(before.exited()).toBe(false);
    before.pty.kill("SIGHUP"); // what ttyd does when the relay closes the connection
    await waitUntil(() => before.exited(), "the command to leave on hangup");

    const again = attach("killed-1");
    await waitUntil(async () => (await t.sessions.has("killed-1")) && again.output().length > 0, "reattach");
    expect(await roles("killed-1")).toEqual(["claude", "logs", "shell"]);
  });

  it("still attaches when the agent cannot be reached, and the agent's next pass lays the session out", async () => {
    const unreachable = attach("noagent-1", "http://127.0.0.1:1/sessions");
    await waitUntil(() => unreachable.output().includes("attaching anyway"), "the warning");
    await waitUntil(() => t.sessions.has("noagent-1"), "the bare session");
    expect(await roles("noagent-1")).toEqual(["claude"]); // a bare session's pane stands in for Claude
    await t.sessions.ensure("noagent-1");
    expect(await roles("noagent-1")).toEqual(["claude", "logs", "shell"]);
  });
});
