import { join } from "node:path";
import { assertSessionName } from "./names.ts";

/**
 * Where a session's captured Claude-pane output goes: `<logsDir>/sessions/<name>.log`, rotated to
 * `<name>.log.1` … `<name>.log.<keep>` (`.1` newest). Rotation renames the live file and opens a fresh one,
 * so a reader following `<name>.log` must notice the inode change (or the size shrinking), finish the old
 * descriptor to EOF and reopen the path. The bytes are the pane program's raw output: escapes, OSC, BEL.
 */
export function sessionLogPath(logsDir: string, name: string): string {
  return join(logsDir, "sessions", `${assertSessionName(name)}.log`);
}

export interface LogRotation {
  /** Rotate once the live file reaches this many bytes. */
  maxBytes: number;
  /** How many rotated files to keep (at least 1). */
  keep: number;
}

export const DEFAULT_LOG_ROTATION: LogRotation = { maxBytes: 8 * 1024 * 1024, keep: 3 };

/*
 * The pipe-pane helper: `head -c N` copies exactly N bytes (GNU head never reads past N from a pipe), so
 * the file is filled to the limit, rotated, and a new `head` continues with the next byte; nothing is lost.
 * `stdbuf -o0` makes head write each read at once: with a file as stdout, stdio would otherwise hold up
 * to 4 KiB back, and a notification parser tailing the log would see a prompt's BEL late. A short copy means the pipe closed, and the helper
 * exits. Two processes per session (sh and head) instead of a Node process keep the cost per session low.
 * The script has no `#`, `%` or single quote, so it survives tmux's expansion and sh quoting unchanged.
 */
const ROTATING_COPY_SCRIPT = [
  'log="$1"; max="$2"; keep="$3"',
  "while :; do",
  'size=$(wc -c < "$log" 2>/dev/null || echo 0)',
  "room=$((max - size))",
  'if [ "$room" -gt 0 ]; then',
  'stdbuf -o0 head -c "$room" >> "$log" || exit 0',
  'size=$(wc -c < "$log" 2>/dev/null || echo 0)',
  '[ "$size" -ge "$max" ] || exit 0',
  "fi",
  "i=$keep",
  'while [ "$i" -gt 1 ]; do j=$((i - 1)); if [ -e "$log.$j" ]; then mv -f "$log.$j" "$log.$i"; fi; i=$j; done',
  'mv -f "$log" "$log.1"',
  "done",
].join("\n");

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

function assertRotation(rotation: LogRotation): void {
  if (!Number.isSafeInteger(rotation.maxBytes) || rotation.maxBytes < 1)
    throw new RangeError(`log rotation maxBytes must be a positive integer, got ${rotation.maxBytes}`);
  if (!Number.isSafeInteger(rotation.keep) || rotation.keep < 1 || rotation.keep > 100)
    throw new RangeError(`log rotation keep must be an integer from 1 to 100, got ${rotation.keep}`);
}

/**
 * The command string for `tmux pipe-pane`. tmux runs it with `/bin/sh -c` after strftime and format
 * expansion, so every `%` and `#` is doubled (a `#` in the logs path would otherwise expand, or run `#(...)`).
 */
export function rotatingLogPipeCommand(
  logFile: string,
  rotation: LogRotation = DEFAULT_LOG_ROTATION,
): string {
  assertRotation(rotation);
  const command = [
    "exec sh -c",
    shellQuote(ROTATING_COPY_SCRIPT),
    "berth-session-log",
    shellQuote(logFile),
    String(rotation.maxBytes),
    String(rotation.keep),
  ].join(" ");
  return command.replaceAll("%", "%%").replaceAll("#", "##");
}
