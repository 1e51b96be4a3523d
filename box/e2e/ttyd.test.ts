import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startTerminalEndpoint } from "../terminal/endpoint.ts";
import { ATTACH_ENDED_MARKER } from "../terminal/protocol.ts";
import { attachGuardScript, findTtyd, startTtyd } from "../terminal/ttyd-launcher.ts";
import { registerTerminalConformanceSuite } from "../testing/terminal-conformance.ts";
import { makeTestTmux, TMUX_MISSING } from "../testing/tmux.ts";

// Debian bookworm has no ttyd package; a box uses the upstream static release. BERTH_TTYD_BIN points the
// suite at a binary outside PATH (e.g. one built from source with libwebsockets-dev).
const ttydBinary = process.env.BERTH_TTYD_BIN || (await findTtyd());

registerTerminalConformanceSuite({
  name: "ttyd binary",
  skip: ttydBinary
    ? false
    : "no ttyd binary: put ttyd (upstream release; not packaged in Debian bookworm) on PATH or set BERTH_TTYD_BIN",
  deviations: {
    // src/pty.c: process->paused is set at spawn and never cleared, so pty_pause() always returns early.
    pause: "ttyd 1.7.7 ignores PAUSE; a relay must apply backpressure to the upstream socket itself",
  },
  start: (ctx) =>
    startTtyd({
      binary: ttydBinary!,
      credential: ctx.credential,
      tmux: ctx.tmux,
      cwd: ctx.cwd,
      host: "127.0.0.1",
    }),
});

function runGuard(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = attachGuardScript(["printf", "%s|"]);
  return new Promise((resolve) => {
    const child = execFile("/bin/sh", ["-c", script, "berth-attach", ...args], (err, stdout, stderr) => {
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
    child.stdin!.end(); // after the attach the guard waits for its input to end (see ATTACH_ENDED_MARKER)
  });
}

describe("ttyd attach guard", () => {
  it("execs the attach with exactly one valid name", async () => {
    expect(await runGuard(["ws-1"])).toMatchObject({
      code: 0,
      stdout: `new-session|-A|-s|ws-1|${ATTACH_ENDED_MARKER}`,
    });
    expect((await runGuard(["a".repeat(32)])).code).toBe(0);
  });

  it.each([
    [["x#(touch /tmp/pwned)"]],
    [["../"]],
    [["UPPER"]],
    [["a".repeat(33)]],
    [[""]],
    [["a b"]],
    [["é"]],
    [[]],
    [["one", "two"]],
  ])("refuses %j", async (args) => {
    const result = await runGuard(args);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^berth: /);
  });
});

describe.skipIf(TMUX_MISSING)(
  `startTerminalEndpoint${TMUX_MISSING ? ` (skipped: ${TMUX_MISSING})` : ""}`,
  () => {
    const t = makeTestTmux("berth-ep-");
    const empty = mkdtempSync(join("/tmp", "berth-nottyd-"));
    afterAll(async () => {
      await t.cleanup();
      rmSync(empty, { recursive: true, force: true });
    });
    const base = { tmux: { socket: t.socket }, credential: "berth:x", cwd: t.cwd };

    it("uses the built-in server when asked or when no ttyd is on PATH", async () => {
      const forced = await startTerminalEndpoint({ ...base, ttyd: "builtin" });
      expect(forced.kind).toBe("builtin");
      await forced.close();
      const path = process.env.PATH;
      process.env.PATH = empty;
      try {
        const auto = await startTerminalEndpoint(base);
        expect(auto.kind).toBe("builtin");
        await auto.close();
      } finally {
        process.env.PATH = path;
      }
    });

    it("fails clearly when an explicit ttyd cannot start", async () => {
      await expect(startTerminalEndpoint({ ...base, ttyd: join(empty, "ttyd") })).rejects.toThrow(/ttyd/);
    });

    it.skipIf(!ttydBinary)("prefers an explicit ttyd binary", async () => {
      const ep = await startTerminalEndpoint({ ...base, ttyd: ttydBinary! });
      expect(ep.kind).toBe("ttyd");
      await ep.close();
    });
  },
);
