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
 * milliseconds, and ending in `true` keeps a stopped agent from ever showing an error in Claude's UI.
 *
 * The command does not hold the agent's port: it reads it, each time it runs, from the port file the agent
 * rewrites at every start (`system/agent-port`, agent-owned, world-readable). A Claude process that outlives
 * an agent restart (its settings loaded long ago) therefore reaches the new agent, whatever port it got.
 */
import { spawnSync } from "node:child_process";
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const HOOK_MARKER = "berth-agent-hook";
export const NOTIFICATION_MATCHER = "permission_prompt|idle_prompt|elicitation_dialog";
/** The hook events Berth listens to (claude-state.ts says what each means); Notification has its matcher. */
export const HOOK_EVENTS = [
  "Notification",
  "UserPromptSubmit",
  "PermissionRequest",
  "Elicitation",
  "PostToolUse",
  "Stop",
  "StopFailure",
  "SessionStart",
  "SessionEnd",
] as const;
/** Characters a port file path may hold: it is written into a shell command between single quotes. */
const SAFE_PATH = /^\/[A-Za-z0-9_./-]+$/;

export class HookInstallError extends Error {
  override name = "HookInstallError";
}

/**
 * The shell command Claude Code runs. `$TMUX_PANE` (inherited from the pane Claude runs in) names the pane;
 * `tmux display-message` turns it into the session name on the same tmux server (`$TMUX`). The agent
 * validates that header again.
 */
export function hookCommand(portFile: string): string {
  if (!SAFE_PATH.test(portFile))
    throw new RangeError(`the agent port file must be an absolute path of [A-Za-z0-9_./-], got ${portFile}`);
  // No port file (agent never started) or an empty one: post nowhere rather than to port 80.
  return [
    `p=$(cat '${portFile}' 2>/dev/null); [ -n "$p" ] &&`,
    "curl -sS -m 3 -o /dev/null -X POST",
    "-H 'Content-Type: application/json'",
    `-H "X-Berth-Session: $(tmux display-message -p -t "$TMUX_PANE" '#{session_name}' 2>/dev/null)"`,
    "--data-binary @-",
    `"http://127.0.0.1:$p/hooks/claude"`,
    `; true # ${HOOK_MARKER}`,
  ].join(" ");
}

/** Writes the agent's current loopback port where the hook command reads it (replace, never a torn file). */
export function writeAgentPortFile(portFile: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new RangeError(`agent port must be 1-65535, got ${port}`);
  const tmp = `${portFile}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  writeFileSync(tmp, `${port}\n`, { mode: 0o644, flag: "wx" });
  renameSync(tmp, portFile);
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
  portFile: string,
  file = "settings.json",
): string | null {
  let settings: Record<string, Json>;
  if (existing === null || existing.trim() === "") settings = {};
  else {
    let parsed: unknown;
    try {
      parsed = JSON.parse(existing);
    } catch {
      // Not the parser's message: it quotes the file's content, which must not reach logs.
      throw new HookInstallError(
        `${file} is not valid JSON; leaving it untouched, so Claude Code hooks are not installed`,
      );
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new HookInstallError(`${file} must hold a JSON object; leaving it untouched`);
    settings = parsed as Record<string, Json>;
  }
  const hooks = settings.hooks ?? {};
  if (typeof hooks !== "object" || hooks === null || Array.isArray(hooks))
    throw new HookInstallError(`${file}: "hooks" must be an object; leaving it untouched`);

  const command = hookCommand(portFile);
  const wanted: Record<string, MatcherGroup> = Object.fromEntries(
    HOOK_EVENTS.map((event) => [
      event,
      {
        ...(event === "Notification" ? { matcher: NOTIFICATION_MATCHER } : {}),
        hooks: [{ type: "command", command, timeout: 10 }],
      },
    ]),
  );
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

export interface InstallHooksOptions {
  claudeDir: string;
  /** The file the agent writes its loopback port into (writeAgentPortFile); the hooks read it. */
  portFile: string;
  /** The box user. When the agent runs as root, the file is read and written by a child running as them. */
  owner?: { uid: number; gid: number } | null;
}

/**
 * Merges the hooks into `<claudeDir>/settings.json`.
 *
 * `.claude` belongs to the box user, who can swap any path in it for a symlink at any moment. A root
 * agent reading or writing there could be steered into reading /etc/shadow (and echoing it in a parse
 * error) or writing where it should not. So as root the merge runs in a child process with the box user's
 * uid and gid: it can do nothing there the user could not do themselves.
 */
export async function installClaudeHooks(options: InstallHooksOptions): Promise<InstallHooksResult> {
  const owner = options.owner;
  if (owner && process.getuid?.() === 0 && owner.uid !== 0) return installAsUser(options, owner);
  return installHere(options.claudeDir, options.portFile);
}

function installAsUser(
  options: InstallHooksOptions,
  owner: { uid: number; gid: number },
): InstallHooksResult {
  const r = spawnSync(
    process.execPath,
    [fileURLToPath(import.meta.url), options.claudeDir, options.portFile],
    {
      uid: owner.uid,
      gid: owner.gid,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      encoding: "utf8",
      timeout: 30_000,
    },
  );
  if (r.error)
    throw new HookInstallError(`cannot run the hook installer as uid ${owner.uid}: ${r.error.message}`);
  if (r.status !== 0)
    throw new HookInstallError(
      r.stderr.trim().split("\n").at(-1) || `hook installer exited with ${r.status}`,
    );
  return JSON.parse(r.stdout) as InstallHooksResult;
}

/** Reads and writes as the current user, never following a symlink at the settings path. */
function installHere(claudeDir: string, portFile: string): InstallHooksResult {
  const path = join(claudeDir, "settings.json");
  let existing: string | null = null;
  let mode = 0o644;
  let fd: number | null = null;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ELOOP") throw new HookInstallError(`${path} is a symlink; leaving it untouched`);
    if (code !== "ENOENT") throw new HookInstallError(`cannot read ${path} (${code})`);
  }
  if (fd !== null) {
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new HookInstallError(`${path} is not a regular file; leaving it untouched`);
      mode = st.mode & 0o777;
      existing = readFileSync(fd, "utf8");
    } finally {
      closeSync(fd);
    }
  }
  const next = mergeHookSettings(existing, portFile, path);
  if (next === null) return { path, changed: false };
  const tmp = join(dirname(path), `.settings.json.berth-${process.pid}`);
  rmSync(tmp, { force: true }); // a leftover (or planted) entry; rm removes a link, never its target
  const out = openSync(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    mode,
  );
  try {
    writeFileSync(out, next);
    fchmodSync(out, mode);
  } finally {
    closeSync(out);
  }
  renameSync(tmp, path);
  return { path, changed: true };
}

if (import.meta.main) {
  // The unprivileged half of installAsUser: argv = claudeDir, portFile.
  try {
    process.stdout.write(JSON.stringify(installHere(process.argv[2]!, process.argv[3]!)));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
  }
}
