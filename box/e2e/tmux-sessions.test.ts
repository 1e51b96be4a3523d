import { existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestTmux, type TestTmux, TMUX_MISSING } from "../testing/tmux.ts";
import { waitUntil } from "../testing/wait.ts";
import { InvalidSessionNameError } from "../tmux/names.ts";
import { MAX_SEND_KEYS_CHARS, SessionNotFoundError } from "../tmux/sessions.ts";

let t: TestTmux;
const suite = TMUX_MISSING ? describe.skip : describe;
suite(`tmux sessions${TMUX_MISSING ? ` (skipped: ${TMUX_MISSING})` : ""}`, () => {
  beforeAll(() => {
    t = makeTestTmux();
  });
  afterAll(async () => {
    await t.cleanup();
  });

  const display = (target: string, format: string) =>
    t.sessions.tmux.run(["display-message", "-p", "-t", target, format]).then((s) => s.trim());

  describe("TmuxSessions.ensure", () => {
    it("lays out three tagged panes in the working directory, with a hint when claude is missing", async () => {
      const result = await t.sessions.ensure("layout-1");
      expect(result).toEqual({ created: true, logFile: join(t.logsDir, "sessions", "layout-1.log") });
      const panes = await t.sessions.panes("layout-1");
      expect(Object.keys(panes).sort()).toEqual(["claude", "logs", "shell"]);
      expect(new Set(Object.values(panes)).size).toBe(3);
      for (const id of Object.values(panes)) expect(await display(id, "#{pane_current_path}")).toBe(t.cwd);
      await waitUntil(
        async () => (await t.sessions.capture("layout-1")).includes("Claude Code is not installed"),
        "the no-claude hint in the Claude pane",
      );
      // The hint pane became the shell: it still runs commands.
      await t.sessions.sendKeys("layout-1", "echo after-hint-$((6*7))", { enter: true });
      await waitUntil(
        async () => (await t.sessions.capture("layout-1")).includes("after-hint-42"),
        "shell output",
      );
    });

    it("keeps the Claude pane usable on a phone-sized client", async () => {
      await t.sessions.ensure("narrow-1");
      const panes = await t.sessions.panes("narrow-1");
      await t.sessions.tmux.run(["resize-window", "-t", "=narrow-1", "-x", "45", "-y", "40"]);
      // tmux's default main pane is 80 columns; on a 45-column client it collapsed to one column.
      await waitUntil(
        async () => Number(await display(panes.claude!, "#{pane_width}")) >= 24,
        "the Claude pane to keep most of the width",
      );
    });

    it("is idempotent and never toggles the capture pipe off", async () => {
      await t.sessions.ensure("idem-1");
      const again = await t.sessions.ensure("idem-1");
      expect(again.created).toBe(false);
      await t.sessions.ensure("idem-1");
      const panes = await t.sessions.panes("idem-1");
      expect(await display(panes.claude!, "#{pane_pipe}")).toBe("1");
      const count = await t.sessions.tmux.run(["list-panes", "-s", "-t", "=idem-1", "-F", "#{pane_id}"]);
      expect(count.trim().split("\n")).toHaveLength(3);
    });

    it("creates a session once when asked concurrently", async () => {
      const results = await Promise.all([1, 2, 3].map(() => t.sessions.ensure("race-1")));
      expect(results.filter((r) => r.created)).toHaveLength(1);
    });

    it("works when the agent itself runs inside another tmux", async () => {
      const s = t.withOptions({ env: { ...process.env, TMUX: "/tmp/elsewhere,1,0", TMUX_PANE: "%99" } });
      expect((await s.ensure("nested")).created).toBe(true);
      expect(await t.sessions.has("nested")).toBe(true);
    });

    it("refuses a working directory that does not exist", async () => {
      const s = t.withOptions({ cwd: join(t.dir, "missing") });
      await expect(s.ensure("nocwd")).rejects.toThrow(/does not exist/);
      expect(await s.has("nocwd")).toBe(false);
    });

    it("runs claude inside a shell, so its exit leaves a working shell", async () => {
      const bin = join(t.dir, "fakebin");
      mkdirSync(bin, { recursive: true });
      const fake = join(bin, "claude");
      writeFileSync(fake, "#!/bin/sh\necho fake-claude-ran-$$\nexit 3\n", { mode: 0o755 });
      const s = t.withOptions({ env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
      await s.ensure("with-claude");
      await waitUntil(
        async () => /fake-claude-ran-\d+/.test(await s.capture("with-claude")),
        "fake claude output",
      );
      await s.sendKeys("with-claude", "echo survived-$((5+5))", { enter: true });
      await waitUntil(
        async () => (await s.capture("with-claude")).includes("survived-10"),
        "the shell after claude",
      );
    });
  });

  describe("a session that exists without the layout", () => {
    const fakeClaude = () => {
      const bin = join(t.dir, "fakebin-bare");
      mkdirSync(bin, { recursive: true });
      writeFileSync(join(bin, "claude"), "#!/bin/sh\necho fake-claude-in-$PWD\nexec sleep 600\n", {
        mode: 0o755,
      });
      return t.withOptions({ env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    };
    const paneCount = async (name: string) =>
      (await t.sessions.tmux.run(["list-panes", "-s", "-t", `=${name}:`, "-F", "#{pane_id}"]))
        .trim()
        .split("\n").length;

    it("gets the three panes around its pane, and Claude when that pane sits at a shell", async () => {
      // What a plain `tmux new-session -A` (an attach that reached tmux before the agent) leaves.
      await t.sessions.tmux.run(["new-session", "-d", "-s", "bare-1", "-c", t.cwd, "/bin/bash --norc -i"]);
      const s = fakeClaude();
      expect((await s.ensure("bare-1")).created).toBe(false);
      const panes = await s.panes("bare-1");
      expect(Object.keys(panes).sort()).toEqual(["claude", "logs", "shell"]);
      expect(await paneCount("bare-1")).toBe(3);
      await waitUntil(
        async () => (await s.capture("bare-1")).includes("fake-claude-in-"),
        "claude started in the bare session's pane",
      );
      await s.ensure("bare-1");
      expect(await paneCount("bare-1")).toBe(3);
    });

    it("never types into a program, and leaves the user's own arrangement alone", async () => {
      await t.sessions.tmux.run(["new-session", "-d", "-s", "bare-2", "-c", t.cwd, "sleep 600"]);
      const s = fakeClaude();
      await s.ensure("bare-2");
      expect(Object.keys(await s.panes("bare-2")).sort()).toEqual(["claude", "logs", "shell"]);
      expect(await s.capture("bare-2")).not.toContain("claude");

      await t.sessions.tmux.run(["new-session", "-d", "-s", "split-1", "-c", t.cwd]);
      await t.sessions.tmux.run(["split-window", "-t", "=split-1:", "-c", t.cwd]);
      await s.ensure("split-1");
      expect(await paneCount("split-1")).toBe(2);
    });
  });

  describe("TmuxSessions names", () => {
    const bad = ["x#(touch PWNED)", "../", "Upper", "a".repeat(33), "", "a b", "a.b", "a:b", "=a"];
    it.each(bad)("rejects %j before any tmux call", async (raw) => {
      const pwned = join(t.dir, "pwned");
      const name = raw.replace("PWNED", pwned);
      await expect(t.sessions.ensure(name)).rejects.toBeInstanceOf(InvalidSessionNameError);
      await expect(t.sessions.kill(name)).rejects.toBeInstanceOf(InvalidSessionNameError);
      await expect(t.sessions.sendKeys(name, "x")).rejects.toBeInstanceOf(InvalidSessionNameError);
      await expect(t.sessions.has(name)).rejects.toBeInstanceOf(InvalidSessionNameError);
      expect(existsSync(pwned)).toBe(false);
      expect((await t.sessions.list()).map((s) => s.name)).not.toContain(name);
    });

    it("targets exact names: a prefix does not match a longer session", async () => {
      await t.sessions.ensure("prefix-long");
      expect(await t.sessions.has("prefix")).toBe(false);
      expect(await t.sessions.kill("prefix")).toBe(false);
      expect(await t.sessions.has("prefix-long")).toBe(true);
    });

    it("finds the panes of a session named like its window, whichever session tmux has current", async () => {
      // Every session's window is named "main": a bare `=main` target found that window in the current
      // session, so session "main" got another session's panes (its capture, its keys).
      await t.sessions.ensure("main");
      await t.sessions.ensure("later");
      await t.sessions.sendKeys("later", "echo later-is-current");
      const own = await t.sessions.tmux.run(["list-panes", "-t", "=main:", "-F", "#{pane_id}"]);
      const panes = await t.sessions.panes("main");
      expect(own.trim().split("\n").sort()).toEqual(Object.values(panes).sort());
      // And keys for "main" reach main's Claude pane.
      await t.sessions.sendKeys("main", "echo for-main-$((6*7))", { enter: true });
      await waitUntil(
        async () =>
          (await t.sessions.tmux.run(["capture-pane", "-p", "-t", "=main:0.0"])).includes("for-main-42"),
        "the keys in main's pane",
      );
    });
  });

  describe("TmuxSessions keys, capture, list, kill", () => {
    it("sends text literally: tmux formats and key names are not interpreted", async () => {
      await t.sessions.ensure("keys-1");
      const marker = join(t.dir, "from-format");
      await t.sessions.sendKeys("keys-1", `echo '#(touch ${marker}) C-c Enter' lit-$((3+4))`, {
        pane: "shell",
        enter: true,
      });
      const screen = await waitUntil(async () => {
        const s = await t.sessions.capture("keys-1", { pane: "shell" });
        return s.includes("lit-7") ? s : "";
      }, "echo in the shell pane");
      expect(screen).toContain(`#(touch ${marker}) C-c Enter lit-7`);
      expect(existsSync(marker)).toBe(false);
    });

    it("leaves copy mode before typing, so the text reaches the program", async () => {
      await t.sessions.ensure("keys-mode");
      const pane = (await t.sessions.panes("keys-mode")).shell!;
      await t.sessions.tmux.run(["copy-mode", "-t", pane]);
      expect(await display(pane, "#{pane_in_mode}")).toBe("1");
      await t.sessions.sendKeys("keys-mode", "echo typed-$((5*5))", { pane: "shell", enter: true });
      await waitUntil(
        async () => (await t.sessions.capture("keys-mode", { pane: "shell" })).includes("typed-25"),
        "echo",
      );
    });

    it("bounds send-keys input and names missing sessions", async () => {
      await t.sessions.ensure("keys-2");
      await expect(t.sessions.sendKeys("keys-2", "x".repeat(MAX_SEND_KEYS_CHARS + 1))).rejects.toThrow(
        RangeError,
      );
      await expect(t.sessions.sendKeys("nope", "x")).rejects.toBeInstanceOf(SessionNotFoundError);
    });

    it("sends long text in pieces without losing characters", async () => {
      await t.sessions.ensure("keys-3");
      const long = "é".repeat(3000); // more than one chunk, multi-byte
      await t.sessions.sendKeys("keys-3", `printf %s '${long}' | wc -m`, { pane: "shell", enter: true });
      await waitUntil(
        async () => /^\s*3000\s*$/m.test(await t.sessions.capture("keys-3", { pane: "shell" })),
        "wc -m",
      );
    });

    it("lists and kills sessions", async () => {
      const before = Date.now();
      await t.sessions.ensure("kill-me");
      const listed = await t.sessions.list();
      const entry = listed.find((s) => s.name === "kill-me");
      expect(entry).toMatchObject({ windows: 1, attachedClients: 0 });
      // Created by the call above (tmux counts whole seconds).
      expect(entry!.createdAt.getTime()).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
      expect(entry!.createdAt.getTime()).toBeLessThanOrEqual(Date.now());
      expect(await t.sessions.kill("kill-me")).toBe(true);
      expect(await t.sessions.kill("kill-me")).toBe(false);
      expect(await t.sessions.has("kill-me")).toBe(false);
    });

    it("lists nothing when the server is not running", async () => {
      const other = t.withOptions({ socket: { path: join(t.dir, "never-started.sock") } });
      expect(await other.list()).toEqual([]);
    });
  });

  describe("session capture", () => {
    it("writes the Claude pane's raw output to the session log", async () => {
      const { logFile } = await t.sessions.ensure("cap-1");
      await t.sessions.sendKeys("cap-1", "printf 'cap-%s\\a\\n' ok", { enter: true });
      await waitUntil(
        () => existsSync(logFile) && readFileSync(logFile, "latin1").includes("cap-ok\x07"),
        "log",
      );
    });

    it("rotates at the size limit, keeping the configured number of files", async () => {
      const s = t.withOptions({ rotation: { maxBytes: 4000, keep: 2 } });
      const { logFile } = await s.ensure("rot-1");
      // ~20 kB of output: five rotations' worth.
      await s.sendKeys(
        "rot-1",
        "for i in $(seq 1 400); do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done; echo rot-$((1+1))-done",
        {
          enter: true,
        },
      );
      await waitUntil(
        () => existsSync(logFile) && readFileSync(logFile, "latin1").includes("rot-2-done"),
        "the end",
      );
      expect(statSync(`${logFile}.1`).size).toBe(4000);
      expect(statSync(`${logFile}.2`).size).toBe(4000);
      expect(existsSync(`${logFile}.3`)).toBe(false);
      expect(statSync(logFile).size).toBeLessThanOrEqual(4000);
      // Rotation is seamless: the newest rotated file continues exactly where the live file starts.
      const joined = readFileSync(`${logFile}.1`, "latin1") + readFileSync(logFile, "latin1");
      const lines = [...joined.matchAll(/line-(\d+)-x{37}\r?\n/g)].map((m) => Number(m[1]));
      for (let i = 1; i < lines.length; i++) expect(lines[i]).toBe(lines[i - 1]! + 1);
      // The pipe stays open across rotations and a repeated ensure.
      await s.ensure("rot-1");
      expect(await display((await s.panes("rot-1")).claude!, "#{pane_pipe}")).toBe("1");
    });

    it("captures into a logs path containing tmux format characters", async () => {
      const logsDir = join(t.dir, "logs #{host} %Y #(touch pwned-by-format)");
      mkdirSync(logsDir);
      const s = t.withOptions({ logsDir });
      const { logFile } = await s.ensure("odd-path");
      expect(logFile).toBe(join(logsDir, "sessions", "odd-path.log"));
      await s.sendKeys("odd-path", "echo odd-$((8*8))", { enter: true });
      await waitUntil(
        () => existsSync(logFile) && readFileSync(logFile, "latin1").includes("odd-64"),
        "the log",
      );
      expect(existsSync(join(t.cwd, "pwned-by-format"))).toBe(false);
    });

    it("restarts a capture whose pipe was closed", async () => {
      const { logFile } = await t.sessions.ensure("cap-2");
      const pane = (await t.sessions.panes("cap-2")).claude!;
      await t.sessions.tmux.run(["pipe-pane", "-t", pane]); // no command: closes the pipe
      expect(await display(pane, "#{pane_pipe}")).toBe("0");
      await t.sessions.ensure("cap-2");
      expect(await display(pane, "#{pane_pipe}")).toBe("1");
      await t.sessions.sendKeys("cap-2", "echo again-$((2+2))", { enter: true });
      await waitUntil(() => readFileSync(logFile, "latin1").includes("again-4"), "capture after restart");
    });
  });
});

suite("tmux sessions: the panes' working directory", () => {
  it("starts the panes in ~/projects when home links to the projects directory", async () => {
    const own = makeTestTmux("berth-home-");
    try {
      const home = join(own.dir, "home");
      mkdirSync(home);
      symlinkSync("../projects", join(home, "projects"));
      // The first call starts this server, so its HOME is the workspace's home (as locally, and as
      // berth-tmux.service gives it on a VM).
      const s = own.withOptions({ env: { ...process.env, HOME: home } });
      await s.ensure("home-1");
      await s.sendKeys("home-1", 'echo "pwd=$PWD"', { enter: true, pane: "shell" });
      await waitUntil(
        async () => (await s.capture("home-1", { pane: "shell" })).includes(`pwd=${join(home, "projects")}`),
        "the shell's PWD under home",
      );
      // tmux still reports the real directory.
      const pane = (await s.panes("home-1")).shell!;
      expect((await s.tmux.run(["display-message", "-p", "-t", pane, "#{pane_current_path}"])).trim()).toBe(
        own.cwd,
      );
    } finally {
      await own.cleanup();
    }
  });
});
