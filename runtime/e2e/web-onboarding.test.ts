/**
 * The onboarding wizard and the secrets panel in Chromium on a phone-sized screen (360×740), against a real
 * control plane in local mode with a box agent, tmux and a scripted `claude` on the agent's PATH: a secret
 * saved in the panel is never shown again, the wizard's reviewed (and edited) files land on the volume,
 * and "Start Claude on it" opens a guided session whose Claude runs in the project on the task, with the
 * secret in its environment.
 */
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Locator, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { claudeRuns, makeFakeClaude } from "../../box/testing/fake-claude.ts";
import { ensureWebBuild } from "../app/web-build.ts";
import { createLogger } from "../platform/logger.ts";
import { HAVE_CHROMIUM, launchChromium, RESULTS } from "../test/browser.ts";
import { createReadyWorkspace, startLocalControlPlane } from "../test/local-control-plane.ts";
import { waitFor } from "../test/wait.ts";

const DOCS = fileURLToPath(new URL("../web/docs/", import.meta.url));
const VALUE = "web-secret-value-5e1f0c9a";

describe.skipIf(!HAVE_CHROMIUM)("onboarding wizard and secrets panel in Chromium", async () => {
  if (!HAVE_CHROMIUM) return;
  await ensureWebBuild(createLogger("silent"));
  const fake = makeFakeClaude();
  const cp = await startLocalControlPlane({}, { agentEnv: { PATH: `${fake.binDir}:${process.env.PATH}` } });
  const workspaceId = await createReadyWorkspace(cp, "wizard");
  const volume = join(cp.workspacesRoot, workspaceId, "volume");
  let browser: Browser;
  let page: Page;
  const shoot = async (name: string) => {
    mkdirSync(DOCS, { recursive: true });
    await page.screenshot({ path: `${RESULTS}${name}`, fullPage: true });
    copyFileSync(`${RESULTS}${name}`, `${DOCS}${name}`);
  };

  beforeAll(async () => {
    browser = await launchChromium();
    const ctx = await browser.newContext({
      viewport: { width: 360, height: 740 },
      isMobile: true,
      hasTouch: true,
    });
    page = await ctx.newPage();
    await page.goto(cp.loginUrl!);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    await page.goto(`${cp.url}/#/w/${workspaceId}`);
    await page.getByRole("heading", { name: "Secrets" }).waitFor();
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** Double-clicks `button` while the first POST to `path` is held at the network: the POSTs it made. */
  const doubleClick = async (button: Locator, path: string): Promise<number> => {
    let posts = 0;
    let held: (() => Promise<void>) | null = null;
    await page.route(`**${path}`, (route) => {
      if (route.request().method() !== "POST") return route.continue();
      posts++;
      if (held) return route.continue();
      held = () => route.continue();
    });
    await button.dblclick();
    await expect.poll(() => held !== null).toBe(true);
    const answered = page.waitForResponse((r) => r.url().endsWith(path) && r.request().method() === "POST");
    await held!();
    await answered;
    await page.unroute(`**${path}`);
    return posts;
  };

  it("saves a secret that is listed by name and never shown again", async () => {
    await page.getByLabel("Secret name").fill("bad name");
    await page.getByLabel("Value").fill(VALUE);
    await page.getByRole("button", { name: "Save secret" }).click();
    await expect.poll(() => page.locator("#secret-name-problem").textContent()).toMatch(/capitals/);
    await page.getByLabel("Secret name").fill("MY_TOKEN");
    await page.getByRole("button", { name: "Save secret" }).click();
    await page.getByRole("status").filter({ hasText: "Saved MY_TOKEN." }).waitFor();
    await page.locator("code", { hasText: "MY_TOKEN" }).waitFor();
    expect(await page.getByLabel("Value").inputValue()).toBe("");
    expect(await page.content()).not.toContain(VALUE);
  });

  it("walks the interview, writes the reviewed files and starts Claude on the task", {
    timeout: 90_000,
  }, async () => {
    await page.getByRole("link", { name: "Set up a project (guided)" }).click();
    await page.getByRole("heading", { name: "Set up a project" }).waitFor();
    await page.getByLabel("Project folder").fill("my app");
    await page.getByRole("button", { name: "Next" }).click();
    await expect.poll(() => page.locator("#ob-project-problem").textContent()).toMatch(/no spaces/);
    await page.getByLabel("Project folder").fill("webapp");
    await page.getByRole("button", { name: "Next" }).click();
    await page.getByLabel("What to build").fill("A recipe box with search");
    await page.getByLabel("Language and stack").fill("Python, Flask");
    await page.getByLabel("How to test it").fill("pytest -q");
    await page.getByRole("button", { name: "Next" }).click();
    await page.getByLabel("Commit and push").check();
    await page.getByLabel("Your preferences (every project)").fill("Explain before large changes.");
    await page.getByRole("button", { name: "Review files" }).click();
    const generated = page.getByLabel(".claude/berth-generated.md");
    await generated.waitFor();
    expect(await generated.inputValue()).toContain("A recipe box with search");
    expect(await page.getByLabel("Allowed without asking (one rule a line)").inputValue()).toContain(
      "Bash(pytest -q:*)",
    );
    await generated.fill(`${await generated.inputValue()}\nAdded while reviewing on a phone.\n`);
    await shoot("onboarding-review-phone.png");
    // A rule typed key by key on a new line keeps its line break and its spaces.
    const allow = page.getByLabel("Allowed without asking (one rule a line)");
    await allow.focus();
    await page.keyboard.press("ControlOrMeta+End");
    await page.keyboard.press("Enter");
    await page.keyboard.type("Bash(npm run lint:*)");
    expect(await allow.inputValue()).toMatch(/\nBash\(npm run lint:\*\)$/);
    await page.getByRole("button", { name: "Write the files" }).click();
    await page.getByRole("button", { name: "Start Claude on it" }).waitFor({ timeout: 30_000 });

    const project = join(volume, "user/projects/webapp");
    expect(readFileSync(join(project, "CLAUDE.md"), "utf8")).toContain("@.claude/berth-generated.md");
    expect(readFileSync(join(project, ".claude/berth-generated.md"), "utf8")).toContain(
      "Added while reviewing on a phone.",
    );
    const settings = JSON.parse(readFileSync(join(project, ".claude/settings.json"), "utf8"));
    expect(settings.permissions.allow).toEqual(
      expect.arrayContaining(["Bash(git push:*)", "Bash(pytest -q:*)", "Bash(npm run lint:*)"]),
    );
    const trust = JSON.parse(readFileSync(join(volume, "user/.claude/.claude.json"), "utf8"));
    expect(trust.projects[project].hasTrustDialogAccepted).toBe(true);
    expect(readFileSync(join(volume, "user/.claude/berth-preferences.md"), "utf8")).toContain(
      "Explain before",
    );

    // A double click starts one Claude on the task, not two in the same project.
    const sessions = `/api/v1/workspaces/${workspaceId}/sessions`;
    expect(await doubleClick(page.getByRole("button", { name: "Start Claude on it" }), sessions)).toBe(1);
    await page.waitForURL(/#\/t\//);
    const run = await waitFor("the scripted claude", () => claudeRuns(fake)[0], 30_000);
    expect(run.argv).toEqual(["A recipe box with search"]);
    expect(run.cwd).toBe(join(volume, "user/home/projects/webapp"));
    expect(run.env.MY_TOKEN).toBe(VALUE);
  });

  it("opens one session for a double click on Open session", async () => {
    await page.goto(`${cp.url}/#/w/${workspaceId}`);
    await page.getByRole("heading", { name: "Sessions" }).waitFor();
    const listed = async () =>
      (
        (await (
          await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, { token: cp.localToken })
        ).json()) as {
          sessions: unknown[];
        }
      ).sessions.length;
    const before = await listed();
    const sessions = `/api/v1/workspaces/${workspaceId}/sessions`;
    expect(await doubleClick(page.getByRole("button", { name: "Open session" }), sessions)).toBe(1);
    await expect.poll(() => page.locator(".session-link").count()).toBe(before + 1);
    expect(await listed()).toBe(before + 1);
  });
});
