/**
 * A scripted stand-in for the `claude` CLI: put its folder first on PATH and every start is recorded
 * (argv, working directory, environment) in a folder of its own, then it prints a marker and exits, so the
 * pane drops back to its shell. Tests read the records with `claudeRuns`.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface FakeClaude {
  /** Put this first on the panes' PATH. */
  binDir: string;
  recordDir: string;
}

export interface ClaudeRun {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
}

export function makeFakeClaude(): FakeClaude {
  const root = mkdtempSync(join(tmpdir(), "berth-fake-claude-"));
  const binDir = join(root, "bin");
  const recordDir = join(root, "runs");
  mkdirSync(binDir);
  mkdirSync(recordDir);
  writeFileSync(
    join(binDir, "claude"),
    [
      "#!/bin/sh",
      `out=${recordDir}/run-$$`,
      'mkdir -p "$out"',
      `printf '%s\\0' "$@" > "$out/argv"`,
      'printf "%s" "$PWD" > "$out/cwd"',
      'env -0 > "$out/env"',
      'touch "$out/done"',
      "echo fake-claude-started",
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  return { binDir, recordDir };
}

/** Every finished start so far. */
export function claudeRuns(fake: FakeClaude): ClaudeRun[] {
  return readdirSync(fake.recordDir)
    .map((d) => join(fake.recordDir, d))
    .filter((dir) => {
      try {
        readFileSync(join(dir, "done"));
        return true;
      } catch {
        return false;
      }
    })
    .map((dir) => {
      const split = (file: string) => readFileSync(join(dir, file), "utf8").split("\0").filter(Boolean);
      const env: Record<string, string> = {};
      for (const kv of split("env")) {
        const i = kv.indexOf("=");
        if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
      }
      return { argv: split("argv"), cwd: readFileSync(join(dir, "cwd"), "utf8"), env };
    });
}
