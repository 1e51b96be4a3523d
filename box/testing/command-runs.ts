import { spawnSync } from "node:child_process";

/**
 * Whether `command args` starts and exits 0 here: how tests and benches tell a missing tool (tmux, restic,
 * nginx, taskset) and skip, saying why, instead of failing.
 */
export function commandRuns(command: string, args: string[]): boolean {
  const run = spawnSync(command, args, { stdio: "ignore" });
  return !run.error && run.status === 0;
}
