/**
 * The user's secrets into the environment of new panes, without putting a value on any command line.
 *
 * `tmux set-environment NAME value` and `new-session -e NAME=value` carry the value in the tmux client's
 * argv, which every process on the box can read in /proc/<pid>/cmdline while the client runs. A command
 * file would put it on disk. So the agent writes `set-environment -g` commands to the tmux client's stdin
 * and has the server run them with `source-file -`, in the same client call as the `new-session` that
 * starts the panes: the values travel over the tmux socket only, and the server (the box user's own
 * process) hands them to the panes it spawns.
 *
 * The global environment is the server's, and the server is this workspace's alone, so every session of
 * the workspace gets the same set. The names set last time are kept in a server option
 * (`@berth-env-names`), so a deleted secret is unset before the next session starts.
 */
import type { TmuxClient } from "./tmux-command.ts";

export interface EnvironmentEntry {
  name: string;
  value: string;
}

export const ENV_NAMES_OPTION = "@berth-env-names";
const NAME = /^[A-Z_][A-Z0-9_]{0,63}$/;
const PLAIN = /^[A-Za-z0-9_./=+:@,-]$/;

/**
 * A tmux double-quoted string holding exactly `value`: every byte outside a small plain set becomes an
 * octal escape, so `$` (environment expansion), `~`, `#`, `;`, quotes, backslashes and newlines are inert.
 */
export function tmuxQuote(value: string): string {
  let out = '"';
  for (const byte of Buffer.from(value, "utf8")) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && PLAIN.test(ch) ? ch : `\\${byte.toString(8).padStart(3, "0")}`;
  }
  return `${out}"`;
}

/** The commands that make the server's global environment hold `entries` and nothing else we set before. */
export function environmentScript(entries: readonly EnvironmentEntry[], previous: readonly string[]): string {
  const wanted = entries.filter((e) => NAME.test(e.name) && !e.value.includes("\0"));
  const names = new Set(wanted.map((e) => e.name));
  const lines: string[] = [];
  for (const old of previous) if (NAME.test(old) && !names.has(old)) lines.push(`set-environment -gu ${old}`);
  for (const e of wanted) lines.push(`set-environment -g ${e.name} ${tmuxQuote(e.value)}`);
  lines.push(`set-option -g ${ENV_NAMES_OPTION} ${tmuxQuote([...names].join(" "))}`);
  return `${lines.join("\n")}\n`;
}

/** The names our last script set, or none (no server yet, or never set). */
export async function previousEnvironmentNames(tmux: TmuxClient): Promise<string[]> {
  const raw = await tmux.run(["show-options", "-gqv", ENV_NAMES_OPTION]).catch(() => "");
  return raw.split(/\s+/).filter((n) => NAME.test(n));
}
