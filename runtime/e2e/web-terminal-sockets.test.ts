/**
 * The terminal page's WebSocket in Chromium, against a real control plane in local mode with a real box
 * agent and tmux: a page keeps at most one terminal socket. Leaving the terminal while its token is on its
 * way opens nothing afterwards, and a second connect (the browser coming back online, Retry now) replaces
 * the socket instead of adding one that doubles the output and holds a tmux client until the relay's
 * idle timeout.
 */
import type { Browser, BrowserContext, Page, WebSocket } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureWebBuild } from "../app/web-build.ts";
import { createLogger } from "../platform/logger.ts";
import { HAVE_CHROMIUM, launchChromium } from "../test/browser.ts";
import { createReadyWorkspace, startLocalControlPlane } from "../test/local-control-plane.ts";

describe.skipIf(!HAVE_CHROMIUM)("the terminal's socket in Chromium", async () => {
  if (!HAVE_CHROMIUM) return;
  await ensureWebBuild(createLogger("silent"));
  const cp = await startLocalControlPlane();
  const workspaceId = await createReadyWorkspace(cp, "sockets");
  const res = await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, {
    method: "POST",
    token: cp.localToken,
    json: { name: "main" },
  });
  const sessionId: string = ((await res.json()) as { session: { id: string } }).session.id;

  let browser: Browser;
  let ctx: BrowserContext;
  beforeAll(async () => {
    browser = await launchChromium();
    ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const signIn = await ctx.newPage();
    await signIn.goto(cp.loginUrl!);
    await signIn.getByRole("heading", { name: "Workspaces" }).waitFor();
    await signIn.close();
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** A new tab on the dashboard, and the terminal sockets it opens (open ones counted by `open`). */
  async function dashboard() {
    const page = await ctx.newPage();
    const sockets: WebSocket[] = [];
    page.on("websocket", (ws) => {
      if (ws.url().endsWith("/terminal")) sockets.push(ws);
    });
    await page.goto(`${cp.url}/#/`);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    return { page, sockets, open: () => sockets.filter((s) => !s.isClosed()).length };
  }
  const openTerminal = async (page: Page) => {
    await page.evaluate((id) => {
      location.hash = `#/t/${id}`;
    }, sessionId);
  };

  it("opens no socket for a terminal that was left while its token was on its way", async () => {
    const { page, open } = await dashboard();
    // The token request is held until the user has gone back to the dashboard.
    let held: (() => Promise<void>) | null = null;
    const tokenAsked = new Promise<void>((resolve) => {
      void page.route("**/terminal-token", (route) => {
        held = () => route.continue();
        resolve();
      });
    });
    await openTerminal(page);
    await tokenAsked;
    await page.evaluate(() => {
      location.hash = "#/";
    });
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    const answered = page.waitForResponse("**/terminal-token");
    await held!();
    await answered;
    await page.unroute("**/terminal-token");

    // Back on the terminal: it goes live on one socket, not next to one nobody closed.
    await openTerminal(page);
    await page.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    await expect.poll(open).toBe(1);
    await page.close();
  });

  it("replaces its socket when the browser comes back online, and prints each output once", async () => {
    const { page, sockets, open } = await dashboard();
    await openTerminal(page);
    await page.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    expect(open()).toBe(1);
    const before = sockets.length;
    await page.evaluate(() => dispatchEvent(new Event("online")));
    await expect.poll(() => sockets.length).toBe(before + 1);
    await page.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    await expect.poll(open).toBe(1);

    await page.locator(".xterm-helper-textarea").focus();
    await page.keyboard.type("echo once-$((6*7))");
    await page.keyboard.press("Enter");
    await expect
      .poll(() => page.locator(".xterm-rows").textContent(), { timeout: 10_000 })
      .toContain("once-42");
    expect(open()).toBe(1);
    await page.close();
  });
});
