/**
 * A scripted `claude` for end-to-end tests: an executable put first on the box's PATH, so the agent starts
 * it in each session's Claude pane as it would start Claude Code. Like the real one it:
 * - runs its auto-updater first: `npm install --global <package>` (a local tarball here, no network), and
 *   records where that landed and the environment it saw (DISABLE_AUTOUPDATER, the npm prefix);
 * - runs the hook commands the agent installed in `settings.json` (from `$CLAUDE_CONFIG_DIR` or
 *   `~/.claude`), with the hook input JSON on stdin, through `sh -c`, inheriting the pane's environment
 *   ($TMUX_PANE names the session), when the test types `<HookEvent> <json>` into the pane.
 * After each line it appends `fired <event> <count>` to its report file.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface ScriptedClaude {
  /** Put this directory first on the box agent's PATH. */
  binDir: string;
  /** Where the stand-in writes `env.json` (at start) and `fired.log` (one line per hook event). */
  reportDir: string;
  /** The name of the package its "auto-updater" installs. */
  updatePackage: string;
}

export function makeScriptedClaude(): ScriptedClaude {
  const base = mkdtempSync(join(tmpdir(), "berth-claude-"));
  const binDir = join(base, "bin");
  const reportDir = join(base, "report");
  const pkgDir = join(base, "pkg");
  mkdirSync(binDir);
  mkdirSync(reportDir);
  mkdirSync(pkgDir);
  const updatePackage = `berth-fake-claude-update-${process.pid}`;
  writeFileSync(
    join(pkgDir, "package.json"),
    JSON.stringify({ name: updatePackage, version: "9.9.9", bin: { [updatePackage]: "bin.js" } }),
  );
  writeFileSync(join(pkgDir, "bin.js"), "#!/usr/bin/env node\nconsole.log('updated');\n");
  const tarball = join(
    base,
    execFileSync("npm", ["pack", "--silent", pkgDir], { cwd: base, encoding: "utf8" }).trim(),
  );

  const script = `#!${process.execPath}
const { execFileSync, spawnSync } = require("node:child_process");
const { appendFileSync, readFileSync, renameSync, writeFileSync } = require("node:fs");
const { join } = require("node:path");
const readline = require("node:readline");
const report = ${JSON.stringify(reportDir)};
// The auto-updater, as Claude Code runs it: a global npm install of the newest version.
let prefix = "";
try { prefix = execFileSync("npm", ["prefix", "--global"], { encoding: "utf8" }).trim(); } catch {}
const install = spawnSync("npm", ["install", "--global", "--offline", "--no-audit", "--no-fund", ${JSON.stringify(tarball)}], { encoding: "utf8" });
// Written whole, then renamed into place: the test reads env.json as soon as it exists.
writeFileSync(join(report, "env.json.partial"), JSON.stringify({
  DISABLE_AUTOUPDATER: process.env.DISABLE_AUTOUPDATER ?? null,
  NPM_CONFIG_PREFIX: process.env.NPM_CONFIG_PREFIX ?? null,
  npmGlobalPrefix: prefix,
  installStatus: install.status,
  installStderr: (install.stderr || "").slice(-2000),
}));
renameSync(join(report, "env.json.partial"), join(report, "env.json"));
const configDir = process.env.CLAUDE_CONFIG_DIR || join(process.env.HOME, ".claude");
process.stdout.write("scripted claude ready\\n");
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const m = /^([A-Za-z]+) ?(.*)$/.exec(line.trim());
  if (!m) return;
  const event = m[1];
  const input = { session_id: "scripted", transcript_path: "/dev/null", cwd: process.cwd(), hook_event_name: event, ...(m[2] ? JSON.parse(m[2]) : {}) };
  const settings = JSON.parse(readFileSync(join(configDir, "settings.json"), "utf8"));
  let count = 0;
  for (const group of settings.hooks?.[event] ?? []) {
    if (event === "Notification" && group.matcher && !new RegExp(group.matcher).test(input.notification_type ?? "")) continue;
    for (const h of group.hooks ?? []) {
      if (h.type !== "command") continue;
      spawnSync("sh", ["-c", h.command], { input: JSON.stringify(input), stdio: ["pipe", "ignore", "inherit"] });
      count++;
    }
  }
  appendFileSync(join(report, "fired.log"), "fired " + event + " " + count + "\\n");
  process.stdout.write("fired " + event + "\\n");
});
`;
  writeFileSync(join(binDir, "claude"), script);
  chmodSync(join(binDir, "claude"), 0o755);
  return { binDir, reportDir, updatePackage };
}
