/**
 * Session names reach tmux's `-s`/`-t`, which run through tmux's format expander: `#{...}` expands and
 * `#(cmd)` executes a shell command. The control plane already derives safe names, but the agent checks
 * again before any tmux call because a name is an attacker-reachable string (ttyd's `?arg=`).
 */
export const SESSION_NAME_PATTERN = /^[a-z0-9-]{1,32}$/;

export class InvalidSessionNameError extends Error {
  override name = "InvalidSessionNameError";
}

export function isValidSessionName(value: unknown): value is string {
  return typeof value === "string" && SESSION_NAME_PATTERN.test(value);
}

/** Returns the name unchanged, or throws naming the rule (never echoing more than a short, escaped prefix). */
export function assertSessionName(value: unknown): string {
  if (isValidSessionName(value)) return value;
  const shown = typeof value === "string" ? JSON.stringify(value.slice(0, 40)) : typeof value;
  throw new InvalidSessionNameError(
    `invalid session name ${shown}: must match ${SESSION_NAME_PATTERN.source} (1-32 of a-z, 0-9, -)`,
  );
}

/** tmux target for an exact session match: without `=`, `-t foo` also matches a session named `foobar`. */
export function exactSessionTarget(name: string): string {
  return `=${assertSessionName(name)}`;
}
