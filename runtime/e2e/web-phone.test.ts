/**
 * The phone-first web client in a real browser (Debian's Chromium, playwright-core) against a real control
 * plane in local mode with a real box agent and tmux:
 * - the dashboard explains itself: inline validation next to the field, the per-user limit where the form
 *   was, a card with state, sessions and previews, no 404 on load;
 * - on a phone (390×844 and 360×740) the terminal shows one pane at full width with a switcher, switching
 *   panes works, the prompt is short (`ls -la ~` leaves it on one row) and every key-bar key is on screen;
 *   a desktop (1440×900) attached at the same time keeps tmux's three-pane layout;
 * - a hibernated workspace's terminal offers Wake and connects by itself once the workspace is ready;
 * - notifications: Mark all read, Escape closes the feed, a destroyed workspace's notifications are greyed,
 *   not actionable and not counted.
 * Screenshots for the README land in runtime/web/docs/ (and test-results/).
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureWebBuild } from "../app/web-build.ts";
import { createLogger } from "../platform/logger.ts";
import { freePort } from "../store/embedded.ts";
import { accessibilityProblems, HAVE_CHROMIUM, launchChromium, RESULTS } from "../test/browser.ts";
import { startLocalControlPlane } from "../test/local-control-plane.ts";
import { waitFor } from "../test/wait.ts";

const DOCS = fileURLToPath(new URL("../web/docs/", import.meta.url));
const PHONE = { width: 390, height: 844 };
const SMALL_PHONE = { width: 360, height: 740 };
const DESKTOP = { width: 1440, height: 900 };

describe.skipIf(!HAVE_CHROMIUM)("phone-first web client in Chromium", async () => {
  if (!HAVE_CHROMIUM) return;
  await ensureWebBuild(createLogger("silent"));
  const cp = await startLocalControlPlane();
  let browser: Browser;
  let desktop: BrowserContext;
  let page: Page;
  let workspaceId = "";
  let workspaceUrl = "";
  let sessionId = "";
  const notFound: string[] = [];
  /** Closed after each test, passed or not, so a failure leaves no tmux client attached for the next. */
  const opened: Array<BrowserContext | Page> = [];

  /** Saves a screenshot for the README (runtime/web/docs/) and a copy with this run's results. */
  const shoot = async (p: Page, name: string, fullPage = false) => {
    mkdirSync(DOCS, { recursive: true });
    await p.screenshot({ path: `${RESULTS}${name}`, fullPage });
    copyFileSync(`${RESULTS}${name}`, `${DOCS}${name}`);
  };
  const tmux = (...args: string[]) =>
    execFileSync("tmux", ["-S", cp.agentState(workspaceId)!.tmuxSocket, ...args], {
      encoding: "utf8",
    }).trim();
  const panes = () =>
    Object.fromEntries(
      tmux("list-panes", "-s", "-t", "=main", "-F", "#{@berth-role} #{pane_id}")
        .split("\n")
        .map((l) => l.split(" ") as [string, string]),
    ) as Record<"claude" | "logs" | "shell", string>;
  /** The window as tmux has it: zoomed?, the active pane's role and width, and every pane's width. */
  const layout = () => {
    const rows = tmux(
      "list-panes",
      "-t",
      "=main",
      "-F",
      "#{window_zoomed_flag} #{pane_active} #{@berth-role} #{pane_width}",
    )
      .split("\n")
      .map((l) => l.split(" "));
    const active = rows.find((r) => r[1] === "1")!;
    return { zoomed: active[0] === "1", role: active[2], width: Number(active[3]), panes: rows.length };
  };
  const phoneContext = async (viewport: { width: number; height: number }) => {
    // bypassCSP: axe is injected as an inline script, which the control plane's CSP rightly forbids.
    const ctx = await browser.newContext({
      viewport,
      isMobile: true,
      hasTouch: true,
      deviceScaleFactor: 2,
      bypassCSP: true,
    });
    opened.push(ctx);
    await ctx.addCookies(await desktop.cookies());
    return ctx;
  };
  const workspaceState = async () =>
    (await (await cp.api(`/api/v1/workspaces/${workspaceId}`, { token: cp.localToken })).json()).workspace
      .state;

  beforeAll(async () => {
    browser = await launchChromium();
    desktop = await browser.newContext({ viewport: DESKTOP });
    page = await desktop.newPage();
    page.on("response", (r) => {
      if (r.status() === 404) notFound.push(r.url());
    });
  });
  afterEach(async () => {
    for (const o of opened.splice(0)) await o.close().catch(() => {});
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("validates the workspace name next to the field, in words", async () => {
    await page.goto(cp.loginUrl!);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    await page.getByRole("heading", { name: "Create your first workspace" }).waitFor();
    const name = page.getByLabel("Name your workspace");
    await name.fill("my/box");
    await page.getByRole("button", { name: "Create workspace" }).click();
    const problem = page.locator("#ws-name-problem");
    await expect
      .poll(() => problem.textContent())
      .toBe("Use letters, digits, spaces, dots, dashes or underscores only.");
    expect(await name.getAttribute("aria-invalid")).toBe("true");
    expect(await name.getAttribute("aria-describedby")).toBe("ws-name-problem");
    // Nothing reached the server, and nothing shows at the top of the page.
    expect(await page.locator(".page > .error").count()).toBe(0);
    await name.fill("phone");
    expect(await problem.count()).toBe(0);
  });

  it("creates a workspace that reaches ready", async () => {
    await page.getByRole("button", { name: "Create workspace" }).click();
    await page.getByRole("status", { name: "state: ready" }).waitFor({ timeout: 60_000 });
    workspaceUrl = page.url();
    workspaceId = workspaceUrl.split("/").at(-1)!;
  });

  it("says next to the field when a session name is taken", async () => {
    await page.getByLabel("New session").fill("main");
    await page.getByRole("button", { name: "Open session" }).click();
    await page.getByRole("link", { name: "main" }).waitFor();
    await page.getByLabel("New session").fill("Main Box");
    await expect
      .poll(() => page.locator("#session-name-problem").textContent())
      .toBe("Use lowercase letters, digits and dashes only (no spaces).");
    await page.getByLabel("New session").fill("main");
    await page.getByRole("button", { name: "Open session" }).click();
    await expect
      .poll(() => page.locator("#session-name-problem").textContent())
      .toBe("A session named main is already open.");
    await page.getByLabel("New session").fill("");
    const [{ id }] = (
      await cp.deps.database.pool.query("SELECT id FROM sessions WHERE workspace_id = $1 AND name = 'main'", [
        workspaceId,
      ])
    ).rows;
    sessionId = id;
  });

  it("explains the dashboard: a card with state, sessions and previews; the limit where the form was", {
    timeout: 120_000,
  }, async () => {
    // A dev server in the logs pane, so the card has a preview to show.
    await waitFor("the session's panes", () => cp.agentState(workspaceId) && panes().logs);
    const port = await freePort();
    tmux("send-keys", "-t", panes().logs, `python3 -m http.server ${port} --bind 127.0.0.1`, "Enter");
    // No 404 on a page load (it was /favicon.ico).
    notFound.length = 0;
    await page.goto(cp.url);
    const card = page.getByRole("article", { name: "phone" });
    await card.getByRole("status", { name: "state: ready" }).waitFor();
    await card.getByRole("link", { name: "main" }).waitFor();
    await card.getByRole("button", { name: `Open preview :${port}` }).waitFor({ timeout: 30_000 });
    expect(await card.textContent()).toContain("On this machine");
    expect(await card.textContent()).not.toMatch(/cx22|fsn1/);
    const limit = page.getByRole("region", { name: "New workspace" });
    expect(await limit.textContent()).toContain(
      "You have 1 of 1 workspace, the most this server allows one user",
    );
    expect(await page.getByLabel("Name your workspace").count()).toBe(0);
    expect(notFound).toEqual([]);
    await shoot(page, "dashboard-desktop.png");
    await page.goto(workspaceUrl);
    await page.getByRole("button", { name: `open preview on port ${port}` }).waitFor({ timeout: 30_000 });
    await page.getByRole("button", { name: `Share link for port ${port}` }).click();
    await page.getByRole("button", { name: `Copy shared link of port ${port}` }).waitFor();
    await shoot(page, "workspace-desktop.png", true);

    const ctx = await phoneContext(PHONE);
    const phone = await ctx.newPage();
    await phone.goto(cp.url);
    await phone
      .getByRole("article", { name: "phone" })
      .getByRole("status", { name: "state: ready" })
      .waitFor();
    await phone.getByRole("button", { name: `Open preview :${port}` }).waitFor({ timeout: 30_000 });
    expect(await phone.evaluate(() => document.documentElement.scrollWidth - innerWidth)).toBeLessThanOrEqual(
      0,
    );
    await shoot(phone, "dashboard-phone.png", true);
    await ctx.close();
  });

  it("shows one full-width pane with a switcher on a 390-px phone, and switches panes", {
    timeout: 120_000,
  }, async () => {
    const ctx = await phoneContext(PHONE);
    const phone = await ctx.newPage();
    await phone.goto(`${cp.url}/#/t/${sessionId}`);
    await phone.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    const switcher = phone.getByRole("group", { name: "Pane" });
    await switcher.getByRole("button", { name: "Claude" }).waitFor();
    // tmux zooms the Claude pane to the phone's full width (the phone is the window's only client).
    await waitFor("the Claude pane zoomed to the phone", () => {
      const l = layout();
      return (
        l.zoomed && l.role === "claude" && l.width === Number(tmux("list-clients", "-F", "#{client_width}"))
      );
    });
    const cols = layout().width;
    expect(cols).toBeGreaterThan(40);

    await switcher.getByRole("button", { name: "Shell" }).click();
    expect(await switcher.getByRole("button", { name: "Shell" }).getAttribute("aria-pressed")).toBe("true");
    await waitFor("the shell pane zoomed", () => layout().role === "shell" && layout().zoomed);
    expect(layout().width).toBe(cols);

    // The prompt is short: `ls -la ~` and its prompt stay on one row of the phone's pane.
    const shell = panes().shell;
    const shellText = () => tmux("capture-pane", "-p", "-J", "-S", "-", "-t", shell);
    /** Waits until the shell pane's text (scrollback too) passes `test`; a timeout shows the pane's end. */
    const shellShows = (what: string, test: (text: string) => boolean) =>
      waitFor(what, () => {
        const text = shellText();
        if (test(text)) return true;
        throw new Error(`the shell pane ends with:\n${text.trimEnd().split("\n").slice(-12).join("\n")}`);
      });
    // The zoom resized the shell's pane, and bash redraws its line on the resize: keys typed during that
    // redraw can garble the screen (a prompt row cut short, rows of output drawn over). An empty command
    // first, typed into the pane by tmux itself: tmux resized the pane (and bash got its SIGWINCH) before
    // the key, so once the fresh prompt is on screen bash has the new size and is waiting for input.
    const prompts = (text: string) => text.split("\n").filter((r) => /^~\/projects[#$]\s*$/.test(r)).length;
    const promptsBefore = prompts(shellText());
    tmux("send-keys", "-t", shell, "Enter");
    await shellShows("a fresh prompt in the shell pane", (text) => prompts(text) > promptsBefore);
    await phone.locator(".xterm-helper-textarea").focus();
    await phone.keyboard.type("ls -la ~");
    await phone.keyboard.press("Enter");
    await shellShows("ls output", (text) => text.includes("projects -> ../projects"));
    // Rows as the phone shows them (not joined): the command's row starts with the whole prompt.
    const screen = tmux("capture-pane", "-p", "-t", shell);
    const rows = screen.split("\n");
    // From the scrollback too: on a short phone pane a long listing can push the command row off screen.
    const history = tmux("capture-pane", "-p", "-S", "-", "-t", shell).split("\n");
    const command = history.findLast((r) => r.includes("ls -la ~"));
    expect(command).toMatch(/^~\/projects[#$] ls -la ~\s*$/);
    expect(rows.at(-1)).toMatch(/^~\/projects[#$]\s*$/);
    expect(screen).not.toContain("/volume/user");

    // Every key of the key bar is on screen.
    const keys = phone.getByRole("toolbar", { name: "terminal keys" }).getByRole("button");
    expect(await keys.count()).toBe(9);
    for (const box of await Promise.all((await keys.all()).map((k) => k.boundingBox()))) {
      expect(box!.x).toBeGreaterThanOrEqual(0);
      expect(box!.x + box!.width).toBeLessThanOrEqual(PHONE.width);
      expect(box!.y + box!.height).toBeLessThanOrEqual(PHONE.height);
    }
    expect(await phone.evaluate(() => document.documentElement.scrollWidth - innerWidth)).toBeLessThanOrEqual(
      0,
    );
    await shoot(phone, "terminal-phone.png");
    await phone.getByRole("button", { name: "More" }).click();
    await phone.getByRole("region", { name: "terminal menu" }).waitFor();
    await phone.screenshot({ path: `${RESULTS}terminal-menu-phone.png` });
    expect(await accessibilityProblems(phone, "phone terminal with its menu")).toEqual([]);
    await phone.keyboard.press("Escape");
    await phone.getByRole("region", { name: "terminal menu" }).waitFor({ state: "hidden" });
    // Touch selection: the screen as native text, which a phone can select; Copy puts it on the clipboard.
    await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: cp.url });
    await phone.getByRole("button", { name: "More" }).click();
    await phone.getByRole("button", { name: "Select & copy" }).click();
    const sheet = phone.getByRole("dialog", { name: "Select text" });
    const text = (await sheet.locator("pre").textContent())!;
    expect(text).toMatch(/^~\/projects[#$] ls -la ~$/m);
    expect(text).not.toContain("[main]");
    await phone.screenshot({ path: `${RESULTS}terminal-select-phone.png` });
    await sheet.getByRole("button", { name: "Copy" }).click();
    await phone.getByText("Copied", { exact: true }).waitFor();
    expect(await phone.evaluate(() => navigator.clipboard.readText())).toBe(text);
    await sheet.getByRole("button", { name: "Done" }).click();
    await sheet.waitFor({ state: "hidden" });

    // A desktop attached to the same session at the same time keeps tmux's three-pane layout.
    const big = await desktop.newPage();
    opened.push(big);
    await big.goto(`${cp.url}/#/t/${sessionId}`);
    await big.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    await waitFor("the desktop's layout", () => !layout().zoomed && layout().width > cols);
    const widths = tmux("list-panes", "-t", "=main", "-F", "#{pane_width}").split("\n").map(Number);
    expect(widths).toHaveLength(3);
    expect(Math.min(...widths)).toBeGreaterThan(cols);
    expect(await big.getByRole("group", { name: "Pane" }).count()).toBe(0);
    await big.locator(".xterm-helper-textarea").focus();
    await big.keyboard.type("echo desk-$((6*7))");
    await big.keyboard.press("Enter");
    // The desktop's typing went to its own active pane, and the phone's view did not change it.
    await expect
      .poll(() => big.locator(".xterm-rows").textContent(), { timeout: 10_000 })
      .toContain("desk-42");
    expect(layout().panes).toBe(3);
    // Back on the phone: its pane comes back when it is used.
    await phone.bringToFront();
    await phone.locator(".xterm-helper-textarea").focus();
    await phone.keyboard.type("echo phone-$((2*4))");
    await phone.keyboard.press("Enter");
    await waitFor("the phone's view again", () => layout().zoomed && layout().role === "shell");
    await waitFor("the phone's typing in the shell", () =>
      tmux("capture-pane", "-p", "-J", "-t", shell).includes("\nphone-8\n"),
    );
    await big.close();
    await ctx.close();
  });

  it("fits a 360-px phone: one pane, the switcher and every key on screen", async () => {
    const ctx = await phoneContext(SMALL_PHONE);
    const phone = await ctx.newPage();
    await phone.goto(`${cp.url}/#/t/${sessionId}`);
    await phone.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    await phone.getByRole("group", { name: "Pane" }).getByRole("button", { name: "Logs" }).click();
    await waitFor("the logs pane zoomed to 360 px", () => {
      const l = layout();
      return (
        l.zoomed && l.role === "logs" && l.width === Number(tmux("list-clients", "-F", "#{client_width}"))
      );
    });
    for (const el of await phone.locator(".keybar button, .term-bar button, .term-bar a").all()) {
      const box = (await el.boundingBox())!;
      expect(box.x).toBeGreaterThanOrEqual(0);
      expect(box.x + box.width).toBeLessThanOrEqual(SMALL_PHONE.width);
    }
    // The top bar is one row.
    const bar = (await phone.locator(".term-bar").boundingBox())!;
    expect(bar.height).toBeLessThanOrEqual(52);
    expect(await phone.evaluate(() => document.documentElement.scrollWidth - innerWidth)).toBeLessThanOrEqual(
      0,
    );
    await ctx.close();
  });

  it("offers Wake on a hibernated workspace's terminal and connects once it is ready", {
    timeout: 120_000,
  }, async () => {
    await cp.api(`/api/v1/workspaces/${workspaceId}/hibernate`, { method: "POST", token: cp.localToken });
    await waitFor("hibernated", async () => (await workspaceState()) === "hibernated", 60_000);
    const ctx = await phoneContext(PHONE);
    const phone = await ctx.newPage();
    await phone.goto(`${cp.url}/#/t/${sessionId}`);
    await phone.getByRole("heading", { name: "This workspace is hibernated" }).waitFor();
    expect(await phone.getByText("Retry now").count()).toBe(0);
    await phone.screenshot({ path: `${RESULTS}terminal-hibernated-phone.png` });
    expect(await accessibilityProblems(phone, "hibernated terminal")).toEqual([]);
    await phone.getByRole("button", { name: "Wake workspace" }).click();
    await phone.getByRole("heading", { name: "Waking up…" }).waitFor();
    await phone.screenshot({ path: `${RESULTS}terminal-waking-phone.png` });
    await phone.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 60_000 });
    expect(await phone.getByRole("heading", { name: "Waking up…" }).count()).toBe(0);
    await phone.locator(".xterm-helper-textarea").focus();
    await phone.keyboard.type("echo woke-$((3*3))");
    await phone.keyboard.press("Enter");
    await expect
      .poll(() => phone.locator(".xterm-rows").textContent(), { timeout: 15_000 })
      .toContain("woke-9");
    await ctx.close();
  });

  it("notifications: mark all read, Escape closes, a destroyed workspace's are greyed and inert", {
    timeout: 120_000,
  }, async () => {
    const notify = async (message: string) => {
      const agent = cp.agentState(workspaceId)!;
      await fetch(`http://127.0.0.1:${agent.agentPort}/hooks/claude`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-berth-session": "main" },
        body: JSON.stringify({
          hook_event_name: "Notification",
          notification_type: "permission_prompt",
          message,
        }),
      });
    };
    await page.goto(cp.url);
    await notify("Claude wants to run npm test");
    await page.getByRole("button", { name: "notifications, 1 unread" }).waitFor({ timeout: 20_000 });
    await page.getByRole("button", { name: /notifications/ }).click();
    const feed = page.getByRole("region", { name: "notification feed" });
    await feed.waitFor();
    await page.keyboard.press("Escape");
    await feed.waitFor({ state: "hidden" });
    await page.getByRole("button", { name: /notifications/ }).click();
    await feed.getByRole("button", { name: "Mark all read" }).click();
    await page.getByRole("button", { name: "notifications, 0 unread" }).waitFor();

    await notify("Claude is waiting for you");
    await page.getByRole("button", { name: "notifications, 1 unread" }).waitFor({ timeout: 20_000 });
    // Destroy the workspace: its notifications become history.
    await page.goto(workspaceUrl);
    await page.getByRole("button", { name: "Destroy…" }).click();
    await page.getByRole("button", { name: "Yes, destroy" }).click();
    await page.getByRole("heading", { name: "Create your first workspace" }).waitFor({ timeout: 60_000 });
    await page.getByRole("button", { name: "notifications, 0 unread" }).waitFor({ timeout: 20_000 });
    await page.getByRole("button", { name: /notifications/ }).click();
    await feed.waitFor();
    expect(await feed.getByText("workspace destroyed").count()).toBe(2);
    expect(await feed.getByRole("button", { name: /Claude/ }).count()).toBe(0);
    const before = page.url();
    await feed.getByText("Claude is waiting for you", { exact: true }).click();
    expect(page.url()).toBe(before);
    await page.screenshot({ path: `${RESULTS}notifications-destroyed.png` });

    // Its terminal says so, offers the way back, and does not retry.
    await page.goto(`${cp.url}/#/t/${sessionId}`);
    await page.getByRole("heading", { name: /destroyed|Nothing to connect to/ }).waitFor();
    await page.getByRole("link", { name: "Back to workspaces" }).waitFor();
    expect(await page.getByRole("button", { name: "Retry now" }).count()).toBe(0);
    expect(
      await page
        .getByRole("status")
        .filter({ hasText: /retrying|connecting/ })
        .count(),
    ).toBe(0);
    await page.screenshot({ path: `${RESULTS}terminal-destroyed.png` });
  });
});
