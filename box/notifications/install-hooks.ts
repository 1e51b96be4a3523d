/**
 * Installs Berth's Claude Code hooks into `<root>/user/.claude/settings.json` (the box user's
 * `~/.claude/settings.json`), merged into whatever the user has:
 * - only entries carrying our marker are ever replaced or removed, so the user's own hooks and settings stay;
 * - running it again changes nothing (the file is rewritten only when its content would change);
 * - a file that is not valid JSON, or whose `hooks` is not the documented shape, is left untouched and
 *   reported: we never overwrite something we do not understand.
 *
 * The hook command is a `curl` one-liner rather than Claude Code's `http` hook type or a Node script:
 * `http` hooks need Claude Code >= 2.1.63 and cannot compute the tmux session; a Node script depends on
 * whatever `node` the user's PATH has. curl is on every box (the image installs it), starts in
 * milliseconds, and `|| true` keeps a stopped agent from ever showing an error in Claude's UI.
 */
import { existsSync, lstatSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { chown } from "node:fs/promises";
import { dirname, join } from "node:path";

export const HOOK_MARKER = "berth-agent-hook";
export const NOTIFICATION_MATCHER = "permission_prompt|idle_prompt|elicitation_dialog";

export class HookInstallError extends Error {
  override name = "HookInstallError";
}

/**
 * The shell command Claude Code runs. `$TMUX_PANE` (inherited from the pane Claude runs in) names the pane;
 * `tmux display-message` turns it into the session name on the same tmux server (`$TMUX`). The agent
 * validates that header again.
 */
export function hookCommand(agentPort: number): string {
  if (!Number.isInteger(agentPort) || agentPort < 1 || agentPort > 65535)
    throw new RangeError(`agent port must be 1-65535, got ${agentPort}`);
  return [
    "curl -sS -m 5 -o /dev/null -X POST",
    "-H 'Content-Type: application/json'",
    `-H "X-Berth-Session: $(tmux display-message -p -t "$TMUX_PANE" '#{session_name}' 2>/dev/null)"`,
    "--data-binary @-",
    `http://127.0.0.1:${agentPort}/hooks/claude`,
    `|| true # ${HOOK_MARKER}`,
  ].join(" ");
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type HookEntry = { type?: string; command?: string; [k: string]: Json | undefined };
type MatcherGroup = { matcher?: string; hooks?: HookEntry[]; [k: string]: Json | HookEntry[] | undefined };

function ours(entry: HookEntry): boolean {
  return typeof entry?.command === "string" && entry.command.includes(HOOK_MARKER);
}

/** Returns the merged settings text, or null when the file already holds exactly that. */
export function mergeHookSettings(
  existing: string | null,
  agentPort: number,
  file = "settings.json",
): string | null {
  let settings: Record<string, Json>;
  if (existing === null || existing.trim() === "") settings = {};
  else {
    let parsed: unknown;
    try {
      parsed = JSON.parse(existing);
    } catch (err) {
      throw new HookInstallError(
        `${file} is not valid JSON (${(err as Error).message}); leaving it untouched, so Claude Code hooks are not installed`,
      );
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new HookInstallError(`${file} must hold a JSON object; leaving it untouched`);
    settings = parsed as Record<string, Json>;
  }
  const hooks = settings.hooks ?? {};
  if (typeof hooks !== "object" || hooks === null || Array.isArray(hooks))
    throw new HookInstallError(`${file}: "hooks" must be an object; leaving it untouched`);

  const command = hookCommand(agentPort);
  const wanted: Record<string, MatcherGroup> = {
    Notification: { matcher: NOTIFICATION_MATCHER, hooks: [{ type: "command", command, timeout: 10 }] },
    Stop: { hooks: [{ type: "command", command, timeout: 10 }] },
  };
  const merged: Record<string, Json> = { ...(hooks as Record<string, Json>) };
  for (const [event, group] of Object.entries(wanted)) {
    const current = merged[event] ?? [];
    if (!Array.isArray(current))
      throw new HookInstallError(`${file}: "hooks.${event}" must be an array; leaving it untouched`);
    const kept: MatcherGroup[] = [];
    for (const g of current as MatcherGroup[]) {
      if (typeof g !== "object" || g === null || (g.hooks !== undefined && !Array.isArray(g.hooks)))
        throw new HookInstallError(
          `${file}: "hooks.${event}" holds an entry of an unknown shape; leaving it untouched`,
        );
      const userHooks = (g.hooks ?? []).filter((h) => !ours(h));
      if (userHooks.length === (g.hooks ?? []).length) kept.push(g);
      else if (userHooks.length > 0) kept.push({ ...g, hooks: userHooks });
    }
    merged[event] = [...kept, group] as Json;
  }
  const next = `${JSON.stringify({ ...settings, hooks: merged }, null, 2)}\n`;
  return next === existing ? null : next;
}

export interface InstallHooksResult {
  path: string;
  changed: boolean;
}

/**
 * Merges the hooks into `<claudeDir>/settings.json`. `owner` (uid/gid) is applied to a file we create, so
 * the box user can keep editing it. A symlinked settings file is refused rather than followed.
 */
export async function installClaudeHooks(options: {
  claudeDir: string;
  agentPort: number;
  owner?: { uid: number; gid: number } | null;
}): Promise<InstallHooksResult> {
  const path = join(options.claudeDir, "settings.json");
  let existing: string | null = null;
  if (existsSync(path)) {
    const st = lstatSync(path);
    if (!st.isFile()) throw new HookInstallError(`${path} is not a regular file; leaving it untouched`);
    existing = readFileSync(path, "utf8");
  }
  const next = mergeHookSettings(existing, options.agentPort, path);
  if (next === null) return { path, changed: false };
  const mode = existing === null ? 0o644 : lstatSync(path).mode & 0o777;
  const tmp = join(dirname(path), `.settings.json.berth-${process.pid}`);
  writeFileSync(tmp, next, { mode });
  const owner = existing === null ? options.owner : { uid: lstatSync(path).uid, gid: lstatSync(path).gid };
  if (owner && process.getuid?.() === 0) await chown(tmp, owner.uid, owner.gid);
  renameSync(tmp, path);
  return { path, changed: true };
}
