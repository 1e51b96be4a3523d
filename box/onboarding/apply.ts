/**
 * Applies an onboarding interview's result (box/protocol.ts `onboardAction`) on the workspace volume:
 *
 *   user/projects/<project>/                      created, or cloned (into a temporary folder, renamed into
 *                                                 place only after git succeeded: a failed clone leaves nothing)
 *     CLAUDE.md                                   written only when the project has none; an existing one
 *                                                 (the user's) only gains the import line if it lost it
 *     .claude/berth-generated.md                  the generated brief, replaced on every run
 *     .claude/settings.json                       `permissions.allow/deny` merged: entries we generated last
 *                                                 time (recorded in .claude/berth-generated.json) are
 *                                                 replaced, the user's own entries and other keys stay
 *   ~/.claude/berth-preferences.md                 personal preferences, replaced; ~/.claude/CLAUDE.md
 *                                                 imports it (created if missing, else the import appended)
 *   <Claude's .claude.json> projects[<path>]       hasTrustDialogAccepted: true (pre-trust)
 *
 * It runs as the box user (the agent's onboarding child on a VM), so nothing here can write where that
 * user could not.
 */
import { spawn } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { cloneUrlProblem, type OnboardAction } from "../protocol.ts";

export const GENERATED_FILE = ".claude/berth-generated.md";
export const GENERATED_RECORD = ".claude/berth-generated.json";
export const PROJECT_IMPORT = `@${GENERATED_FILE}`;
export const PREFERENCES_FILE = "berth-preferences.md";
export const PREFERENCES_IMPORT = `@${PREFERENCES_FILE}`;

export interface OnboardingPaths {
  /** user/projects on the volume. */
  projects: string;
  /** The box user's ~/.claude (user/.claude on the volume). */
  claudeDir: string;
  /** Claude Code's global state file holding trust entries (`~/.claude.json`, or `$CLAUDE_CONFIG_DIR/.claude.json`). */
  trustFile: string;
  /** Other spellings of user/projects the panes use (`$HOME/projects`), so the trust entry matches either. */
  projectAliases: string[];
}

export class OnboardingError extends Error {
  override name = "OnboardingError";
}

export async function applyOnboarding(
  action: OnboardAction,
  paths: OnboardingPaths,
  opts: { allowLocal: boolean; gitBin?: string },
): Promise<{ projectDir: string }> {
  const dir = join(paths.projects, action.project);
  const name = `user/projects/${action.project}`;
  const present = existsSync(dir);
  if (present && !lstatSync(dir).isDirectory())
    throw new OnboardingError(`${name} exists and is not a folder`);
  // Every file merged below is read first, so one we cannot merge fails the run before anything is written
  // (a clone left in place would make the retry refuse the name).
  if (action.trust) readTrustState(paths.trustFile);
  switch (action.source.kind) {
    case "new":
      if (present) checkMergeable(dir);
      else mkdirSync(dir, { mode: 0o755 });
      break;
    case "existing":
      if (!present) throw new OnboardingError(`${name} does not exist`);
      checkMergeable(dir);
      break;
    case "git":
      if (present)
        throw new OnboardingError(
          `${name} already exists: choose another project name, or onboard it as an existing project`,
        );
      await clone(action.source.url, dir, action.id, opts);
      break;
  }

  mkdirSync(join(dir, ".claude"), { recursive: true, mode: 0o755 });
  writeAtomic(join(dir, GENERATED_FILE), ensureTrailingNewline(action.generated));
  ensureImporting(join(dir, "CLAUDE.md"), action.claudeMd, PROJECT_IMPORT);
  mergePermissions(dir, action.permissions);

  if (action.personal !== null) {
    mkdirSync(paths.claudeDir, { recursive: true, mode: 0o755 });
    writeAtomic(join(paths.claudeDir, PREFERENCES_FILE), ensureTrailingNewline(action.personal));
    ensureImporting(
      join(paths.claudeDir, "CLAUDE.md"),
      `# Personal preferences (every project)\n\n${PREFERENCES_IMPORT}\n`,
      PREFERENCES_IMPORT,
    );
  }
  if (action.trust)
    trust(paths.trustFile, [dir, ...paths.projectAliases.map((p) => join(p, action.project))]);
  return { projectDir: dir };
}

async function clone(
  url: string,
  dir: string,
  id: string,
  opts: { allowLocal: boolean; gitBin?: string },
): Promise<void> {
  const problem = cloneUrlProblem(url, opts);
  if (problem) throw new OnboardingError(`git URL ${problem}`);
  const tmp = join(dirname(dir), `.berth-clone-${id.replace(/[^A-Za-z0-9-]/g, "")}`);
  rmSync(tmp, { recursive: true, force: true });
  const args = [
    "-c",
    "protocol.ext.allow=never",
    "-c",
    `protocol.file.allow=${opts.allowLocal ? "always" : "never"}`,
    "clone",
    "--quiet",
    "--",
    url,
    tmp,
  ];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // Never wait for a password prompt nobody can answer, nor for an unknown host key question.
    GIT_TERMINAL_PROMPT: "0",
    GIT_SSH_COMMAND: "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
  };
  try {
    const { code, stderr } = await run(opts.gitBin ?? "git", args, env, 10 * 60_000);
    if (code !== 0) {
      const detail = stderr.trim().split("\n").slice(-3).join(" ").slice(0, 500);
      throw new OnboardingError(`git clone failed${detail ? `: ${detail}` : ` (exit ${code})`}`);
    }
    if (existsSync(dir))
      throw new OnboardingError(`user/projects/${dir.split("/").pop()} appeared during the clone`);
    checkMergeable(tmp);
    renameSync(tmp, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function run(
  bin: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env, stdio: ["ignore", "ignore", "pipe"], timeout: timeoutMs });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      if (stderr.length < 16_384) stderr += d.toString("utf8");
    });
    child.on("error", (err) => reject(new OnboardingError(`cannot run git: ${err.message}`)));
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

function ensureTrailingNewline(text: string): string {
  return text.endsWith("\n") ? text : `${text}\n`;
}

/** Writes `initial` when the file is missing; otherwise only appends `importLine` if the file lacks it. */
function ensureImporting(file: string, initial: string, importLine: string): void {
  if (!existsSync(file)) {
    const body = ensureTrailingNewline(initial);
    writeAtomic(file, hasLine(body, importLine) ? body : `${body}\n${importLine}\n`);
    return;
  }
  const current = readFileSync(file, "utf8");
  if (hasLine(current, importLine)) return;
  writeAtomic(file, `${ensureTrailingNewline(current)}\n${importLine}\n`);
}

function hasLine(text: string, line: string): boolean {
  return text.split("\n").some((l) => l.trim() === line);
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function readJsonObject(file: string, what: string): JsonObject {
  if (!existsSync(file)) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    throw new OnboardingError(`${what} is not valid JSON: fix or remove it, then run onboarding again`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed))
    throw new OnboardingError(`${what} is not a JSON object: fix or remove it, then run onboarding again`);
  return parsed as JsonObject;
}

function strings(value: Json | undefined): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

/** Throws (writing nothing) when the project's settings or our record of them cannot be merged. */
function checkMergeable(dir: string): void {
  readJsonObject(join(dir, ".claude", "settings.json"), ".claude/settings.json");
  readJsonObject(join(dir, GENERATED_RECORD), GENERATED_RECORD);
}

function readTrustState(file: string): JsonObject {
  return readJsonObject(file, file.endsWith(".claude.json") ? "Claude Code's .claude.json" : file);
}

function mergePermissions(dir: string, generated: { allow: string[]; deny: string[] }): void {
  const settingsFile = join(dir, ".claude", "settings.json");
  const recordFile = join(dir, GENERATED_RECORD);
  const settings = readJsonObject(settingsFile, ".claude/settings.json");
  const record = existsSync(recordFile) ? readJsonObject(recordFile, GENERATED_RECORD) : {};
  const permissions = (
    settings.permissions && typeof settings.permissions === "object" && !Array.isArray(settings.permissions)
      ? settings.permissions
      : {}
  ) as JsonObject;
  const merged: JsonObject = { ...permissions };
  for (const list of ["allow", "deny"] as const) {
    const before = new Set(strings(record[list]));
    const users = strings(permissions[list]).filter((r) => !before.has(r));
    merged[list] = [...new Set([...users, ...generated[list]])];
  }
  writeAtomic(settingsFile, `${JSON.stringify({ ...settings, permissions: merged }, null, 2)}\n`);
  writeAtomic(recordFile, `${JSON.stringify({ allow: generated.allow, deny: generated.deny }, null, 2)}\n`);
}

/** Claude Code skips its trust question for a folder whose entry says `hasTrustDialogAccepted: true`. */
function trust(file: string, projectPaths: string[]): void {
  const state = readTrustState(file);
  const projects = (
    state.projects && typeof state.projects === "object" && !Array.isArray(state.projects)
      ? state.projects
      : {}
  ) as JsonObject;
  for (const path of new Set(projectPaths)) {
    const entry = projects[path];
    const base = entry && typeof entry === "object" && !Array.isArray(entry) ? entry : {};
    projects[path] = { ...base, hasTrustDialogAccepted: true };
  }
  mkdirSync(dirname(file), { recursive: true });
  writeAtomic(file, `${JSON.stringify({ ...state, projects }, null, 2)}\n`, 0o600);
}

/** Temp file and rename in the same folder: a reader sees the old file or the new one, never half of one. */
function writeAtomic(file: string, content: string, mode = 0o644): void {
  const tmp = `${file}.berth-${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode });
  renameSync(tmp, file);
}
