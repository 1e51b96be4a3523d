/**
 * The whole notification path on real parts: the installed hook command run by sh inside a real tmux
 * pane's environment, curl posting to the real loopback server, a pipe-pane style log file followed by the
 * tailer, and the outbox receiving events.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Outbox } from "../home/outbox.ts";
import { hookCommand, writeAgentPortFile } from "../notifications/install-hooks.ts";
import { LogTailer } from "../notifications/log-tailer.ts";
import { type LoopbackServer, startLoopbackServer } from "../notifications/loopback-server.ts";
import { NotificationCenter } from "../notifications/notification-center.ts";
import { waitUntil } from "../testing/wait.ts";

const haveTmux = spawnSync("tmux", ["-V"]).status === 0;
const haveCurl = spawnSync("curl", ["--version"]).status === 0;

let dir: string;
let outbox: Outbox;
let center: NotificationCenter;
let server: LoopbackServer;
let tailer: LogTailer;
const socket = join(mkdtempSync(join(tmpdir(), "berth-tmux-")), "sock");
/** Bytes of each session's capture file the tailer has handed to the notification center. */
const consumed = new Map<string, number>();
/** The tailer has read (and the center processed) the whole capture file of `session`. */
const readToEnd = (session: string) =>
  waitUntil(
    () => consumed.get(session) === statSync(join(dir, "sessions", `${session}.log`)).size,
    `the tailer to read ${session}.log to its end`,
  );

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "berth-notif-"));
  mkdirSync(join(dir, "sessions"));
  outbox = Outbox.open(join(dir, "outbox.jsonl"), { sync: false });
  center = new NotificationCenter({
    publish: (payload) => outbox.append({ type: "notification", at: new Date().toISOString(), payload }),
    log: pino({ level: "silent" }),
    holdMs: 300,
    windowMs: 5000,
  });
  server = await startLoopbackServer({
    port: 0,
    onHook: (input, session) => center.fromHook(input, session),
    health: () => ({ ok: true, lifecycle: "ready" }),
  });
  tailer = new LogTailer({
    dir: join(dir, "sessions"),
    onData: (s, c) => {
      consumed.set(s, (consumed.get(s) ?? 0) + c.length);
      center.fromTerminal(s, c);
    },
    pollMs: 20,
  });
  tailer.start();
});
afterAll(async () => {
  tailer.stop();
  await server.close();
  outbox.close();
  if (haveTmux) spawnSync("tmux", ["-S", socket, "kill-server"]);
});

const notifications = () => outbox.peek().filter((e) => e.type === "notification");
const post = (body: string, headers: Record<string, string> = {}) =>
  fetch(`http://127.0.0.1:${server.port}/hooks/claude`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });

describe("notifications end to end", () => {
  it.skipIf(!haveTmux || !haveCurl)(
    "a hook posted by the installed command becomes one notification; the duplicate OSC 9 is deduped",
    async () => {
      // A real tmux server and pane, so the hook command resolves $TMUX_PANE to the session name itself.
      execFileSync("tmux", ["-S", socket, "-f", "/dev/null", "new-session", "-d", "-s", "demo-1"]);
      const pane = execFileSync("tmux", [
        "-S",
        socket,
        "display-message",
        "-p",
        "-t",
        "=demo-1",
        "#{pane_id}",
      ])
        .toString()
        .trim();
      const pid = execFileSync("tmux", ["-S", socket, "display-message", "-p", "#{pid}"]).toString().trim();
      // A capture file that appears while the tailer runs is read from its start: no need to wait for it.
      writeFileSync(join(dir, "sessions", "demo-1.log"), "");

      const hookInput = JSON.stringify({
        session_id: "abc",
        transcript_path: "/x",
        cwd: "/w",
        hook_event_name: "Notification",
        notification_type: "permission_prompt",
        message: "Claude needs your permission to use Bash",
      });
      // Not spawnSync: the loopback server answers from this process, so blocking it would leave curl
      // waiting out its own timeout.
      writeAgentPortFile(join(dir, "agent-port"), server.port);
      const hook = spawn("sh", ["-c", hookCommand(join(dir, "agent-port"))], {
        env: { ...process.env, TMUX: `${socket},${pid},0`, TMUX_PANE: pane },
        stdio: ["pipe", "ignore", "inherit"],
      });
      hook.stdin!.end(hookInput);
      expect(await new Promise((resolve) => hook.once("exit", resolve))).toBe(0);
      expect(notifications()).toHaveLength(1); // the hook's: emitted before the agent answered curl
      // Claude also rings the terminal: OSC 9 wrapped in tmux passthrough, split across two writes.
      appendFileSync(join(dir, "sessions", "demo-1.log"), "\x1bPtmux;\x1b\x1b]9;Claude needs your ");
      await readToEnd("demo-1"); // the parser has the first half on its own
      appendFileSync(join(dir, "sessions", "demo-1.log"), "permission\x07\x1b\\");
      // Dropped as the hook's duplicate at once (a terminal signal it kept would be held, not counted).
      await waitUntil(() => center.stats.deduped === 1, "the OSC 9 deduped");

      const got = notifications();
      expect(got).toHaveLength(1);
      expect(got[0]!.payload).toMatchObject({
        kind: "permission_prompt",
        source: "hook",
        session: "demo-1",
        title: "Claude needs your permission",
        message: "Claude needs your permission to use Bash",
      });
      expect(center.stats.deduped).toBe(1);
    },
  );

  it("an OSC 9 with no hook becomes a notification of kind osc", async () => {
    const before = notifications().length;
    writeFileSync(join(dir, "sessions", "solo.log"), "");
    appendFileSync(join(dir, "sessions", "solo.log"), "build done \x1b]9;Tests passed\x07");
    // Held for the hook that never comes, then emitted; once the whole file was read nothing else can follow.
    await waitUntil(() => notifications().length > before, "the held OSC 9 to be emitted");
    await readToEnd("solo");
    const got = notifications().slice(before);
    expect(got.map((e) => e.payload)).toMatchObject([
      { kind: "osc", source: "osc9", session: "solo", title: "Tests passed" },
    ]);
  });

  it("rejects bad input clearly and emits nothing", async () => {
    const before = outbox.size;
    const tooBig = await post(" ".repeat(1024 * 1024 + 10));
    expect(tooBig.status).toBe(413);
    expect((await tooBig.json()).error.message).toMatch(/limit is 1048576/);
    const notJson = await post("{nope");
    expect(notJson.status).toBe(400);
    expect((await notJson.json()).error.code).toBe("invalid_json");
    const wrongShape = await post(JSON.stringify({ hook_event_name: 7 }));
    expect(wrongShape.status).toBe(400);
    expect((await wrongShape.json()).error.message).toMatch(/hook_event_name/);
    const badSession = await post(JSON.stringify({ hook_event_name: "Stop" }), {
      "x-berth-session": "x#(id)",
    });
    expect(badSession.status).toBe(400);
    expect((await badSession.json()).error.code).toBe("invalid_session");
    const browser = await post(JSON.stringify({ hook_event_name: "Stop" }), {
      origin: "http://evil.example",
    });
    expect(browser.status).toBe(403);
    const form = await fetch(`http://127.0.0.1:${server.port}/hooks/claude`, { method: "POST", body: "a=b" });
    expect(form.status).toBe(415);
    const other = await post(JSON.stringify({ hook_event_name: "PreToolUse" }));
    expect(await other.json()).toEqual({ result: "ignored" });
    expect(outbox.size).toBe(before);
  });

  it("serves health", async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/healthz`);
    expect(await res.json()).toEqual({ ok: true, lifecycle: "ready" });
    expect((await fetch(`http://127.0.0.1:${server.port}/nope`)).status).toBe(404);
  });
});
