/**
 * The web client in a real browser (Debian's Chromium driven by playwright-core) against a real control
 * plane in local mode with real box agents: sign in through the printed link, create a workspace and watch
 * its build reach ready, open a session, hibernate and wake from the UI, see a notification arrive.
 * Screenshots of the desktop and 375-px layouts land in test-results/.
 */
import { execFileSync } from "node:child_process";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureWebBuild } from "../app/web-build.ts";
import { createLogger } from "../platform/logger.ts";
import { freePort } from "../store/embedded.ts";
import { accessibilityProblems, HAVE_CHROMIUM, launchChromium, RESULTS } from "../test/browser.ts";
import { startLocalControlPlane } from "../test/local-control-plane.ts";

describe.skipIf(!HAVE_CHROMIUM)("web client in Chromium", async () => {
  if (!HAVE_CHROMIUM) return;
  await ensureWebBuild(createLogger("silent"));
  const cp = await startLocalControlPlane();
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  });
  afterAll(async () => {
    await browser?.close();
  });

  let workspaceUrl = "";

  it("signs in through the printed link and creates a workspace that reaches ready", async () => {
    await page.goto(cp.loginUrl!);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    expect(page.url()).not.toContain("token="); // the token leaves the address bar at once
    await page.getByLabel("Name your workspace").fill("browser");
    await page.getByRole("button", { name: "Create workspace" }).click();
    await page.getByRole("status", { name: "state: ready" }).waitFor({ timeout: 30_000 });
    await expect.poll(() => page.locator(".build-log").textContent()).toContain("succeeded");
    workspaceUrl = page.url();
    await page.screenshot({ path: `${RESULTS}desktop-workspace.png`, fullPage: true });
  });

  it("opens a session", async () => {
    await page.getByLabel("New session").fill("main");
    await page.getByRole("button", { name: "Open session" }).click();
    await page.getByRole("link", { name: "main" }).waitFor();
  });

  it("types into a session's terminal and reads the answer back", async () => {
    await page.getByRole("link", { name: "main" }).click();
    await page.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    await page.locator(".xterm-helper-textarea").focus();
    await page.keyboard.type("echo hello-$((20+22))");
    await page.keyboard.press("Enter");
    await expect
      .poll(() => page.locator(".xterm-rows").textContent(), { timeout: 10_000 })
      .toContain("hello-42");
    await page.screenshot({ path: `${RESULTS}desktop-terminal.png` });
  });

  it("reconnects to the same session when the server drops the socket, keeping the screen", async () => {
    const [{ id }] = (await cp.deps.database.pool.query("SELECT id FROM workspaces WHERE name = 'browser'"))
      .rows;
    // The tmux client behind the relay goes away: the server side of the socket closes.
    execFileSync("tmux", ["-S", cp.agentState(id)!.tmuxSocket, "detach-client", "-s", "=main"]);
    await page
      .getByRole("status")
      .filter({ hasText: /retrying|connecting/ })
      .waitFor({ timeout: 10_000 });
    await page.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    await expect
      .poll(() => page.locator(".xterm-rows").textContent(), { timeout: 10_000 })
      .toContain("hello-42");
    await page.locator(".xterm-helper-textarea").focus();
    await page.keyboard.type("echo again-$((2*3))");
    await page.keyboard.press("Enter");
    await expect
      .poll(() => page.locator(".xterm-rows").textContent(), { timeout: 10_000 })
      .toContain("again-6");
    await page.goto(workspaceUrl);
    await page.getByRole("status", { name: "state: ready" }).waitFor();
  });

  it("opens a preview of a dev server started in the terminal", { timeout: 90_000 }, async () => {
    await page.getByRole("link", { name: "main" }).click();
    await page.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    await page.locator(".xterm-helper-textarea").focus();
    // A free port, so a dev server left behind by an earlier run cannot take the test's place.
    const port = await freePort();
    await page.keyboard.type(
      `mkdir -p site && echo '<h1>preview-ok</h1>' > site/index.html && python3 -m http.server ${port} -d site`,
    );
    await page.keyboard.press("Enter");
    await expect
      .poll(() => page.locator(".xterm-rows").textContent(), { timeout: 20_000 })
      .toContain("Serving HTTP");
    await page.goto(workspaceUrl);
    // The box agent detects the listening port and reports it; the page lists it.
    const open = page.getByRole("button", { name: `open preview on port ${port}` });
    await open.waitFor({ timeout: 30_000 });
    const [tab] = await Promise.all([page.context().waitForEvent("page"), open.click()]);
    await tab.getByRole("heading", { name: "preview-ok" }).waitFor({ timeout: 15_000 });
    // Its own origin, not the API's: preview code never runs next to the API's cookies.
    expect(new URL(tab.url()).hostname).toMatch(/\.preview\.localhost$/);
    await tab.close();
  });

  it("hibernates and wakes from the UI", async () => {
    await page.getByRole("button", { name: "Hibernate" }).click();
    await page.getByRole("status", { name: "state: hibernated" }).waitFor({ timeout: 30_000 });
    await page.getByRole("button", { name: "Wake" }).click();
    await page.getByRole("status", { name: "state: ready" }).waitFor({ timeout: 30_000 });
  });

  it("shows a notification as it arrives", async () => {
    const [{ id }] = (await cp.deps.database.pool.query("SELECT id FROM workspaces WHERE name = 'browser'"))
      .rows;
    const agent = cp.agentState(id)!;
    await fetch(`http://127.0.0.1:${agent.agentPort}/hooks/claude`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-berth-session": "main" },
      body: JSON.stringify({
        hook_event_name: "Notification",
        notification_type: "idle_prompt",
        message: "Claude is waiting",
      }),
    });
    await page.getByRole("button", { name: "notifications, 1 unread" }).waitFor({ timeout: 20_000 });
    await page.getByRole("button", { name: /notifications/ }).click();
    await page.getByText("Claude is waiting for your input").waitFor();
  });

  it("lays out on a 375-px phone without horizontal scrolling", async () => {
    const phone = await browser.newPage({
      viewport: { width: 375, height: 740 },
      isMobile: true,
      hasTouch: true,
    });
    await phone.context().addCookies(await page.context().cookies());
    await phone.goto(workspaceUrl);
    await phone.getByRole("status", { name: /state:/ }).waitFor();
    const overflow = await phone.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    expect(overflow).toBeLessThanOrEqual(0);
    await phone.screenshot({ path: `${RESULTS}mobile-workspace.png`, fullPage: true });
    await phone.getByRole("link", { name: "main" }).click();
    const keys = phone.getByRole("toolbar", { name: "terminal keys" });
    await keys.waitFor();
    for (const key of ["Escape", "Tab", "Shift Tab", "Control", "Left", "Up", "Down", "Right", "Control C"]) {
      expect(await keys.getByRole("button", { name: key, exact: true }).isVisible()).toBe(true);
    }
    await phone.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    // The narrower phone makes tmux redraw the panes at its size; wait for that redraw to land.
    await expect
      .poll(() => phone.locator(".xterm-rows").textContent(), { timeout: 10_000 })
      .toContain("[main]");
    await phone.screenshot({ path: `${RESULTS}mobile-terminal.png` });
    await phone.close();
  });

  it("has no serious or critical accessibility violations (axe-core) on the dashboard, a workspace and a terminal, desktop and phone", async () => {
    // axe is injected as an inline script, which our own CSP rightly forbids: separate contexts bypass it.
    const desktop = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 800 } });
    const phone = await browser.newContext({
      bypassCSP: true,
      viewport: { width: 375, height: 740 },
      isMobile: true,
      hasTouch: true,
    });
    const cookies = await page.context().cookies();
    await desktop.addCookies(cookies);
    await phone.addCookies(cookies);
    const problems: string[] = [];
    const d = await desktop.newPage();
    await d.goto(cp.url);
    await d.getByRole("heading", { name: "Workspaces" }).waitFor();
    problems.push(...(await accessibilityProblems(d, "dashboard")));
    await d.goto(workspaceUrl);
    await d.getByRole("status", { name: /state:/ }).waitFor();
    problems.push(...(await accessibilityProblems(d, "workspace")));
    await d.getByRole("link", { name: "main" }).click();
    await d.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    problems.push(...(await accessibilityProblems(d, "terminal")));
    const p = await phone.newPage();
    await p.goto(workspaceUrl);
    await p.getByRole("link", { name: "main" }).click();
    await p.getByRole("toolbar", { name: "terminal keys" }).waitFor();
    problems.push(...(await accessibilityProblems(p, "phone terminal")));
    await desktop.close();
    await phone.close();
    expect(problems).toEqual([]);
  });

  it("signs out: the session cookie is gone and the API answers 401", async () => {
    await page.goto(cp.url);
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByText("You are signed out").waitFor();
    expect((await page.context().cookies()).some((c) => c.name === "berth_session")).toBe(false);
    const status = await page.evaluate(async () => (await fetch("/api/v1/me")).status);
    expect(status).toBe(401);
  });
});
