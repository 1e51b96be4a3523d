/**
 * What the secrets cost a new session: `TmuxSessions.ensure` (three panes, capture, layout) on a private
 * tmux server with no secrets (the baseline) against the same with 10 small secrets and with the maximum
 * (50 secrets of 8 KiB, octal-escaped on the tmux client's stdin), median of 7 creations each. Also the
 * heartbeat answer's extra bytes for the maximum set.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MAX_USER_SECRET_BYTES, MAX_USER_SECRETS } from "../../box/protocol.ts";
import { environmentScript } from "../../box/tmux/environment.ts";
import { TmuxSessions } from "../../box/tmux/sessions.ts";
import { fmt, median, table } from "./harness.ts";

const RUNS = 7;

export async function benchSessionEnvironment(): Promise<void> {
  const dir = mkdtempSync(join("/tmp", "berth-bench-env-"));
  const cwd = join(dir, "projects");
  mkdirSync(cwd);
  mkdirSync(join(dir, "logs"));
  const configFile = join(dir, "tmux.conf");
  writeFileSync(configFile, "");
  let env: Array<{ name: string; value: string }> = [];
  const sessions = new TmuxSessions({
    socket: { path: join(dir, "tmux.sock") },
    configFile,
    cwd,
    logsDir: join(dir, "logs"),
    shell: "/bin/sh",
    shellArgs: [],
    environment: () => env,
  });
  const sets = {
    none: [],
    "10 × 40 B": Array.from({ length: 10 }, (_, i) => ({ name: `KEY_${i}`, value: "k".repeat(40) })),
    [`${MAX_USER_SECRETS} × 8 KiB`]: Array.from({ length: MAX_USER_SECRETS }, (_, i) => ({
      name: `BIG_${i}`,
      value: "\u00e9$'x".repeat(MAX_USER_SECRET_BYTES / 5),
    })),
  };
  const rows: Array<Array<string | number>> = [];
  let baseline = 0;
  let n = 0;
  try {
    await sessions.ensure("keep"); // the server's start is not what is measured
    for (const [label, set] of Object.entries(sets)) {
      env = set;
      const times: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const name = `s-${n++}`;
        const started = performance.now();
        await sessions.ensure(name);
        times.push(performance.now() - started);
        await sessions.kill(name);
      }
      const ms = median(times);
      if (label === "none") baseline = ms;
      rows.push([label, fmt(ms), fmt(ms / baseline, 2), environmentScript(set, []).length]);
    }
  } finally {
    await sessions.killServer();
    rmSync(dir, { recursive: true, force: true });
  }
  table(
    "session start with the user's secrets (median of 7)",
    ["secrets", "ensure ms", "× baseline", "stdin bytes"],
    rows,
  );
}
