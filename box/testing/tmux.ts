/**
 * Test support shared by the tmux and terminal suites: a throwaway tmux server in a temp dir. Wait for what
 * tmux does with waitUntil (./wait.ts), never with a fixed sleep.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TmuxSessions, type TmuxSessionsOptions } from "../tmux/sessions.ts";
import type { TmuxSocket } from "../tmux/tmux-command.ts";
import { commandRuns } from "./command-runs.ts";

/** Why tmux-backed tests cannot run here (a message naming the package), or null when they can. */
export const TMUX_MISSING: string | null = commandRuns("tmux", ["-V"])
  ? null
  : "tmux is not installed (Debian package tmux)";

const TEST_SHELL = ["/bin/bash", "--norc", "--noprofile", "-i"];

export interface TestTmux {
  dir: string;
  socket: TmuxSocket;
  cwd: string;
  logsDir: string;
  sessions: TmuxSessions;
  /** Another manager on the same server with different options (e.g. a PATH with a fake claude). */
  withOptions(extra: Partial<TmuxSessionsOptions>): TmuxSessions;
  cleanup(): Promise<void>;
}

/** A private tmux server (socket in a fresh temp dir, no user config) plus workspace-like directories. */
export function makeTestTmux(prefix = "berth-tmux-"): TestTmux {
  // Short base path: a unix socket path must fit in 108 bytes.
  const dir = mkdtempSync(join("/tmp", prefix));
  const cwd = join(dir, "projects");
  const logsDir = join(dir, "logs");
  mkdirSync(cwd);
  mkdirSync(logsDir);
  const socket = { path: join(dir, "tmux.sock") };
  // Shells without rc files: a developer's ~/.bashrc (pyenv, nvm…) can take seconds per shell, and
  // sessions created by a terminal attach (`new-session -A`) use default-command, not our options.
  const configFile = join(dir, "tmux.conf");
  writeFileSync(configFile, `set -g default-command "${TEST_SHELL.join(" ")}"\n`);
  const base: TmuxSessionsOptions = {
    socket,
    configFile,
    cwd,
    logsDir,
    shell: TEST_SHELL[0],
    shellArgs: TEST_SHELL.slice(1),
  };
  const sessions = new TmuxSessions(base);
  return {
    dir,
    socket,
    cwd,
    logsDir,
    sessions,
    withOptions: (extra) => new TmuxSessions({ ...base, ...extra }),
    async cleanup() {
      await sessions.killServer();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
