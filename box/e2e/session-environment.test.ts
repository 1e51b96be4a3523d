/**
 * The user's secrets reach new panes through the tmux server without ever being on a command line, and a
 * guided session starts Claude Code (a scripted stand-in here) in its project with the task as its prompt.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { watchCmdlines } from "../testing/cmdline-watch.ts";
import { claudeRuns, type FakeClaude, makeFakeClaude } from "../testing/fake-claude.ts";
import { makeTestTmux, type TestTmux, TMUX_MISSING } from "../testing/tmux.ts";
import { waitUntil } from "../testing/wait.ts";
import type { EnvironmentEntry } from "../tmux/environment.ts";
import { environmentScript, tmuxQuote } from "../tmux/environment.ts";

const TRICKY = `v$HOME'"\\;#{session_name}#(id)~\n\tend é ✓ ${"x".repeat(8000)}`;

describe("tmuxQuote / environmentScript", () => {
  it("quotes every byte outside a plain set as an octal escape", () => {
    expect(tmuxQuote("abc-1.2")).toBe('"abc-1.2"');
    expect(tmuxQuote("$a")).toBe('"\\044a"');
    expect(tmuxQuote("é")).toBe('"\\303\\251"');
    expect(tmuxQuote('"\n')).toBe('"\\042\\012"');
  });

  it("unsets names set before and no longer wanted, and skips invalid ones", () => {
    const script = environmentScript(
      [
        { name: "KEEP", value: "1" },
        { name: "bad name", value: "2" },
      ],
      ["GONE", "KEEP"],
    );
    expect(script).toContain("set-environment -gu GONE\n");
    expect(script).not.toContain("-gu KEEP");
    expect(script).toContain('set-environment -g KEEP "1"');
    expect(script).not.toContain("bad name");
  });
});

const suite = TMUX_MISSING ? describe.skip : describe;
suite(`session environment and guided starts${TMUX_MISSING ? ` (skipped: ${TMUX_MISSING})` : ""}`, () => {
  let t: TestTmux;
  let fake: FakeClaude;
  let env: EnvironmentEntry[] = [];
  const guided = new Map<string, { project: string | null; task: string }>();
  beforeAll(() => {
    t = makeTestTmux("berth-env-");
    fake = makeFakeClaude();
    mkdirSync(join(t.cwd, "app"));
  });
  afterAll(async () => {
    await t.cleanup();
  });
  const sessions = () =>
    t.withOptions({
      env: { ...process.env, PATH: `${fake.binDir}:${process.env.PATH}` },
      environment: () => env,
      guided: (name) => guided.get(name),
    });
  const runIn = async (count: number) =>
    waitUntil(() => {
      const runs = claudeRuns(fake);
      return runs.length >= count ? runs : null;
    }, "claude runs");

  it("starts a guided session's Claude in its project, with the task as the prompt and the secrets in its environment", async () => {
    env = [
      { name: "API_TOKEN", value: "tok-first-9f8e7d" },
      { name: "TRICKY", value: TRICKY },
    ];
    guided.set("guided-1", { project: "app", task: "Build a 'todo' app; use $HOME wisely" });
    const watch = watchCmdlines(() => ["tok-first-9f8e7d", "x".repeat(64)]);
    try {
      await sessions().ensure("guided-1");
      const [run] = await runIn(1);
      expect(run!.argv).toEqual(["Build a 'todo' app; use $HOME wisely"]);
      expect(run!.cwd).toBe(join(t.cwd, "app"));
      expect(run!.env.API_TOKEN).toBe("tok-first-9f8e7d");
      expect(run!.env.TRICKY).toBe(TRICKY);
    } finally {
      await watch.stop();
    }
    expect(watch.scans).toBeGreaterThan(0);
    expect(watch.hits).toEqual([]);
    // The other panes start in the project too, and carry the same environment.
    const shell = (await sessions().panes("guided-1")).shell!;
    expect(
      (await t.sessions.tmux.run(["display-message", "-p", "-t", shell, "#{pane_current_path}"])).trim(),
    ).toBe(join(t.cwd, "app"));
  });

  it("gives the next session a changed set: a new value, a removed name unset", async () => {
    env = [{ name: "API_TOKEN", value: "tok-second-1a2b3c" }];
    await sessions().ensure("engineer-1");
    const runs = await runIn(2);
    const second = runs.find((r) => r.argv.length === 0)!;
    expect(second.cwd).toBe(t.cwd);
    expect(second.env.API_TOKEN).toBe("tok-second-1a2b3c");
    expect(second.env.TRICKY).toBeUndefined();
  });

  it("falls back to the projects folder when the guided project is missing or escapes it", async () => {
    guided.set("guided-2", { project: "..", task: "x" });
    guided.set("guided-3", { project: "nope", task: "y" });
    await sessions().ensure("guided-2");
    await sessions().ensure("guided-3");
    const runs = await runIn(4);
    for (const task of ["x", "y"]) expect(runs.find((r) => r.argv[0] === task)!.cwd).toBe(t.cwd);
  });
});
