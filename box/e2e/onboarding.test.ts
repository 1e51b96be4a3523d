/**
 * Onboarding on the volume with real git: a new project, a clone from a local bare repository, a failed
 * clone that leaves nothing behind, and a re-run that keeps the user's edits.
 */
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { applyOnboarding, GENERATED_FILE, type OnboardingPaths } from "../onboarding/apply.ts";
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
