/**
 * Onboarding on the volume with real git: a new project, a clone from a local bare repository, a failed
 * clone that leaves nothing behind, and a re-run that keeps the user's edits.
 */
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { applyOnboarding, GENERATED_FILE, type OnboardingPaths } from "../onboarding/apply.ts";
import { onboardingRunner } from "../onboarding/runner.ts";
import { cloneUrlProblem, type OnboardAction } from "../protocol.ts";

const root = mkdtempSync(join(tmpdir(), "berth-onboard-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const paths: OnboardingPaths = {
  projects: join(root, "user/projects"),
  claudeDir: join(root, "user/.claude"),
  trustFile: join(root, "user/.claude/.claude.json"),
  projectAliases: [join(root, "user/home/projects")],
};
mkdirSync(paths.projects, { recursive: true });

let n = 0;
const action = (over: Partial<OnboardAction>): OnboardAction => ({
  id: `00000000-0000-4000-8000-00000000000${n++}`,
  project: "app",
  source: { kind: "new" },
  claudeMd: "# app\n\n@.claude/berth-generated.md\n",
  generated: "# Project brief\n\nBuild a todo app.\n",
  permissions: { allow: ["Read", "Edit"], deny: ["Bash(sudo:*)"] },
  personal: "# My preferences\n\nBe brief.\n",
  trust: true,
  ...over,
});
const read = (...p: string[]) => readFileSync(join(...p), "utf8");

describe("applyOnboarding", () => {
  it("creates the project files, the personal preferences and the trust entries", async () => {
    await applyOnboarding(action({}), paths, { allowLocal: true });
    const dir = join(paths.projects, "app");
    expect(read(dir, "CLAUDE.md")).toBe("# app\n\n@.claude/berth-generated.md\n");
    expect(read(dir, GENERATED_FILE)).toContain("Build a todo app.");
    expect(JSON.parse(read(dir, ".claude/settings.json"))).toEqual({
      permissions: { allow: ["Read", "Edit"], deny: ["Bash(sudo:*)"] },
    });
    expect(read(paths.claudeDir, "berth-preferences.md")).toContain("Be brief.");
    expect(read(paths.claudeDir, "CLAUDE.md")).toContain("@berth-preferences.md");
    const trust = JSON.parse(read(paths.trustFile));
    expect(trust.projects[dir].hasTrustDialogAccepted).toBe(true);
    expect(trust.projects[join(root, "user/home/projects/app")].hasTrustDialogAccepted).toBe(true);
  });

  it("keeps the user's edits on a re-run and replaces only what it generated", async () => {
    const dir = join(paths.projects, "app");
    writeFileSync(join(dir, "CLAUDE.md"), "# app\n\nMy own rule: tabs.\n"); // the user even dropped the import
    const settings = JSON.parse(read(dir, ".claude/settings.json"));
    settings.permissions.allow.push("Bash(make:*)");
    settings.model = "opus";
    writeFileSync(join(dir, ".claude/settings.json"), JSON.stringify(settings));
    writeFileSync(join(paths.claudeDir, "CLAUDE.md"), "My personal note.\n");
    const state = JSON.parse(read(paths.trustFile));
    state.numStartups = 3;
    writeFileSync(paths.trustFile, JSON.stringify(state));

    await applyOnboarding(
      action({
        source: { kind: "existing" },
        claudeMd: "# replaced?\n",
        generated: "# Project brief\n\nBuild a todo app with tags.\n",
        permissions: { allow: ["Read", "WebFetch"], deny: ["Bash(sudo:*)"] },
      }),
      paths,
      { allowLocal: true },
    );
    expect(read(dir, "CLAUDE.md")).toBe("# app\n\nMy own rule: tabs.\n\n@.claude/berth-generated.md\n");
    expect(read(dir, GENERATED_FILE)).toContain("with tags");
    const merged = JSON.parse(read(dir, ".claude/settings.json"));
    expect(merged.model).toBe("opus");
    expect(merged.permissions.allow).toEqual(["Bash(make:*)", "Read", "WebFetch"]); // Edit was ours: gone
    expect(read(paths.claudeDir, "CLAUDE.md")).toBe("My personal note.\n\n@berth-preferences.md\n");
    expect(JSON.parse(read(paths.trustFile)).numStartups).toBe(3);
  });

  it("clones from a local bare repository", async () => {
    const src = join(root, "src");
    const bare = join(root, "origin.git");
    execFileSync("git", ["init", "-q", src]);
    writeFileSync(join(src, "README.md"), "hello from origin\n");
    const git = (...a: string[]) =>
      execFileSync("git", ["-C", src, "-c", "user.name=t", "-c", "user.email=t@e", ...a], {
        stdio: "ignore",
      });
    git("add", ".");
    git("commit", "-q", "-m", "init");
    execFileSync("git", ["clone", "-q", "--bare", src, bare]);
    await applyOnboarding(action({ project: "cloned", source: { kind: "git", url: bare } }), paths, {
      allowLocal: true,
    });
    expect(read(paths.projects, "cloned", "README.md")).toBe("hello from origin\n");
    expect(existsSync(join(paths.projects, "cloned", "CLAUDE.md"))).toBe(true);
  });

  it("fails a clone clearly and leaves no half-created project", async () => {
    const before = readdirSync(paths.projects).sort();
    await expect(
      applyOnboarding(
        action({ project: "broken", source: { kind: "git", url: join(root, "missing.git") } }),
        paths,
        {
          allowLocal: true,
        },
      ),
    ).rejects.toThrow(/git clone failed: .*missing\.git/);
    await expect(
      applyOnboarding(action({ project: "remote", source: { kind: "git", url: join(root, "src") } }), paths, {
        allowLocal: false,
      }),
    ).rejects.toThrow(/local paths are only allowed in local mode/);
    await expect(
      applyOnboarding(
        action({ project: "cloned", source: { kind: "git", url: join(root, "origin.git") } }),
        paths,
        {
          allowLocal: true,
        },
      ),
    ).rejects.toThrow(/already exists/);
    expect(readdirSync(paths.projects).sort()).toEqual(before);
  });

  it("refuses a settings.json it cannot read instead of overwriting it", async () => {
    const dir = join(paths.projects, "app");
    writeFileSync(join(dir, ".claude/settings.json"), "{ not json");
    await expect(
      applyOnboarding(action({ source: { kind: "existing" } }), paths, { allowLocal: true }),
    ).rejects.toThrow(/settings.json is not valid JSON/);
    expect(read(dir, ".claude/settings.json")).toBe("{ not json");
  });

  it("checks every file it merges before writing anything, so a failed run leaves nothing half-applied", async () => {
    // An unreadable Claude state file fails the run: the clone must not stay behind (a retry would then
    // refuse the name), and nothing else may have been written.
    const trustFile = join(root, "broken-trust/.claude.json");
    mkdirSync(join(root, "broken-trust"), { recursive: true });
    writeFileSync(trustFile, "{ not json");
    const claudeDir = join(root, "broken-trust/claude");
    const brokenPaths = { ...paths, trustFile, claudeDir };
    const before = readdirSync(paths.projects).sort();
    await expect(
      applyOnboarding(
        action({ project: "clone2", source: { kind: "git", url: join(root, "origin.git") } }),
        brokenPaths,
        { allowLocal: true },
      ),
    ).rejects.toThrow(/\.claude\.json is not valid JSON/);
    await expect(
      applyOnboarding(action({ project: "fresh" }), brokenPaths, { allowLocal: true }),
    ).rejects.toThrow(/\.claude\.json is not valid JSON/);
    expect(readdirSync(paths.projects).sort()).toEqual(before);
    expect(existsSync(claudeDir)).toBe(false);
    expect(read(trustFile)).toBe("{ not json");

    // An existing project whose settings.json is broken gains no CLAUDE.md or brief either.
    const legacy = join(paths.projects, "legacy");
    mkdirSync(join(legacy, ".claude"), { recursive: true });
    writeFileSync(join(legacy, ".claude/settings.json"), "{ not json");
    await expect(
      applyOnboarding(action({ project: "legacy", source: { kind: "existing" } }), paths, {
        allowLocal: true,
      }),
    ).rejects.toThrow(/settings.json is not valid JSON/);
    expect(readdirSync(legacy)).toEqual([".claude"]);
    expect(readdirSync(join(legacy, ".claude"))).toEqual(["settings.json"]);
  });
});

describe("cloneUrlProblem", () => {
  it.each([
    ["https://github.com/o/r.git", true],
    ["ssh://git@github.com/o/r.git", true],
    ["git://example.org/r.git", true],
    ["git@github.com:o/r.git", true],
    ["/srv/repo.git", true],
    ["file:///srv/repo.git", true],
  ])("accepts %s in local mode", (url) => expect(cloneUrlProblem(url, { allowLocal: true })).toBeNull());

  it.each([
    ["-uhttps://x", /start with -/],
    ["--upload-pack=touch", /start with -/],
    ["ext::sh -c touch% /tmp/pwned", /whitespace|transport/],
    ["ext::sh", /transport helpers/],
    ["fd::3", /transport helpers/],
    ["http://example.org/r.git", /scheme is not allowed/],
    ["https://user:tok@github.com/o/r", /password or token/],
    ["file:///srv/repo.git", /only allowed in local mode/],
    ["/srv/repo.git", /only allowed in local mode/],
    ["-oProxyCommand=x:y", /start with -/],
    ["a b", /whitespace/],
    ["", /1-2048/],
  ])("refuses %s in hosted mode", (url, why) =>
    expect(cloneUrlProblem(url, { allowLocal: false })).toMatch(why),
  );
});

/** The VM path: the agent (root) runs the work in a child as the box user, so a planted link cannot escalate. */
const nobody = (() => {
  if (process.getuid?.() !== 0) return "the test does not run as root";
  try {
    execFileSync("su", [
      "nobody",
      "-s",
      "/bin/sh",
      "-c",
      `test -r ${JSON.stringify(fileURLToPath(import.meta.url))}`,
    ]);
    return null;
  } catch {
    return "user nobody cannot read this checkout";
  }
})();
describe.skipIf(nobody !== null)(`onboarding as the box user${nobody ? ` (skipped: ${nobody})` : ""}`, () => {
  it("writes as that user and cannot follow a link into root's files", async () => {
    const base = mkdtempSync(join(tmpdir(), "berth-onboard-user-"));
    try {
      chmodSync(base, 0o755);
      const userPaths: OnboardingPaths = {
        projects: join(base, "projects"),
        claudeDir: join(base, "claude"),
        trustFile: join(base, "claude/.claude.json"),
        projectAliases: [],
      };
      for (const d of [userPaths.projects, userPaths.claudeDir]) {
        mkdirSync(d);
        chownSync(d, 65534, 65534);
      }
      const run = onboardingRunner({
        paths: userPaths,
        runAs: { uid: 65534, gid: 65534, home: base },
        allowLocal: true,
      });
      await run(action({ project: "mine" }));
      expect(statSync(join(userPaths.projects, "mine/CLAUDE.md")).uid).toBe(65534);
      expect(statSync(userPaths.trustFile).uid).toBe(65534);

      // The user plants .claude → a root-only folder: as that user the write fails, root's folder stays empty.
      const rootOnly = join(base, "root-only");
      mkdirSync(rootOnly, { mode: 0o755 });
      mkdirSync(join(userPaths.projects, "trap"));
      chownSync(join(userPaths.projects, "trap"), 65534, 65534);
      symlinkSync(rootOnly, join(userPaths.projects, "trap/.claude"));
      await expect(run(action({ project: "trap", source: { kind: "existing" } }))).rejects.toThrow(
        /EACCES|permission denied/i,
      );
      expect(readdirSync(rootOnly)).toEqual([]);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
