/**
 * The terminal path on real tmux: box/tmux's pipe-pane capture writes the Claude pane's raw output to
 * `<logs>/sessions/<name>.log`, and the tailer and parser here turn an OSC 9 printed in that pane into a
 * notification, while an OSC that other programs print (a window title) and the BEL ending the OSC do not
 * count.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LogTailer } from "../notifications/log-tailer.ts";
import { NotificationCenter } from "../notifications/notification-center.ts";
import type { NotificationPayload } from "../protocol.ts";
import { makeTestTmux, type TestTmux } from "../testing/tmux.ts";
import { waitUntil } from "../testing/wait.ts";

const haveTmux = spawnSync("tmux", ["-V"]).status === 0;

describe.skipIf(!haveTmux)("OSC 9 from a real tmux pane (needs tmux)", () => {
  let t: TestTmux;
  let tailer: LogTailer;
  let center: NotificationCenter;
  const got: NotificationPayload[] = [];
  /** What the tailer handed to the notification center, per session. */
  const read = new Map<string, string>();
  beforeAll(() => {
    t = makeTestTmux("berth-cap-");
    center = new NotificationCenter({
      publish: (n) => got.push(n),
      log: pino({ level: "silent" }),
      holdMs: 100,
    });
    tailer = new LogTailer({
      dir: join(t.logsDir, "sessions"),
      onData: (s, c) => {
        read.set(s, (read.get(s) ?? "") + c.toString("latin1"));
        center.fromTerminal(s, c);
      },
      pollMs: 25,
    });
    tailer.start();
  });
  afterAll(async () => {
    tailer.stop();
    await t.cleanup();
  });

  it("turns printf '\\e]9;…\\a' in the Claude pane into one notification for that session", async () => {
    await t.sessions.ensure("cap-1");
    // The session log appears once capture starts; give the tailer a poll to pick it up from its start.
    await waitUntil(
      () => spawnSync("test", ["-e", join(t.logsDir, "sessions", "cap-1.log")]).status === 0,
      "log file",
    );
    await t.sessions.sendKeys("cap-1", String.raw`printf '\033]0;title\007\033]9;%s\007' "build finished"`, {
      enter: true,
    });
    await waitUntil(() => got.length > 0, "a notification from the pane");
    // A later marker in the same capture: once the tailer read it, everything the printf wrote (the title
    // OSC, the BELs ending both sequences) went through the parser before it.
    await t.sessions.sendKeys("cap-1", "echo cap-done-$((6*7))", { enter: true });
    await waitUntil(() => read.get("cap-1")?.includes("cap-done-42"), "the marker in the capture");
    expect(got).toHaveLength(1);
    expect(center.stats).toEqual({ emitted: 1, deduped: 0 });
    expect(got[0]).toMatchObject({ kind: "osc", source: "osc9", session: "cap-1", title: "build finished" });
  });
});
