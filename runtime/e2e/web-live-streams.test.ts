/**
 * The web client's live streams in Chromium against a real control plane: a tab holds one SSE
 * connection to `/api/v1/notifications/stream`, shared by the notification bell and the views that follow
 * sessions. Over HTTP/1.1 (local mode) the browser gives a host six connections across all its tabs, and
 * every held stream takes one: two a tab froze a fourth Berth tab (and every API call of the others).
 * A stream refused with an answer that is not a stream (which EventSource never retries) is opened again,
 * and so is a build's log.
 */
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureWebBuild } from "../app/web-build.ts";
import { createLogger } from "../platform/logger.ts";
import { HAVE_CHROMIUM, launchChromium } from "../test/browser.ts";
import { startTestControlPlane } from "../test/control-plane.ts";

describe.skipIf(!HAVE_CHROMIUM)("live streams in Chromium", async () => {
  if (!HAVE_CHROMIUM) return;
  await ensureWebBuild(createLogger("silent"));
  const cp = await startTestControlPlane();
  // A workspace, so that the dashboard's card follows its sessions live.
  await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: { name: "live" } });
  let browser: Browser;
  let ctx: BrowserContext;
  beforeAll(async () => {
    browser = await launchChromium();
    ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    await page.goto(cp.loginUrl!);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    await page.close();
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** A dashboard tab, once its bell and the live session stream have both subscribed. */
  async function dashboard(): Promise<{ page: Page; streams: () => number }> {
    const page = await ctx.newPage();
    let streams = 0;
    page.on("request", (r) => {
      if (r.url().endsWith("/api/v1/notifications/stream")) streams++;
    });
    await page.goto(`${cp.url}/#/`);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    await page.getByRole("button", { name: /notifications, \d+ unread/ }).waitFor();
    await page.getByRole("heading", { name: "live" }).waitFor();
    return { page, streams: () => streams };
  }

  it("opens one stream a tab, so that four tabs still load", async () => {
    const tabs = [];
    for (let i = 0; i < 4; i++) tabs.push(await dashboard());
    for (const tab of tabs) expect(tab.streams()).toBe(1);
    for (const tab of tabs) await tab.page.close();
  });

  it("opens the stream again after an answer that is not a stream", async () => {
    const page = await ctx.newPage();
    // The first stream meets a proxy answering 503 (a control plane restarting behind it).
    let refused = false;
    await page.route("**/api/v1/notifications/stream", (route) => {
      if (refused) return route.continue();
      refused = true;
      return route.fulfill({ status: 503, contentType: "text/plain", body: "restarting" });
    });
    const following = page.waitForResponse(
      (r) => r.url().endsWith("/api/v1/notifications/stream") && r.status() === 200,
      { timeout: 20_000 },
    );
    await page.goto(`${cp.url}/#/`);
    await page.getByRole("heading", { name: "live" }).waitFor();
    expect(refused).toBe(true);
    await following;
    await page.close();
  });

  it("opens a build's log again after an answer that is not a stream", async () => {
    const { workspaces } = (await (await cp.api("/api/v1/workspaces", { token: cp.localToken })).json()) as {
      workspaces: Array<{ id: string; name: string }>;
    };
    const live = workspaces.find((w) => w.name === "live")!;
    const page = await ctx.newPage();
    // The log's first stream meets a proxy answering 502 (a control plane restarting behind it).
    let refused = 0;
    await page.route("**/api/v1/builds/*/log", (route) => {
      if (refused > 0) return route.continue();
      refused++;
      return route.fulfill({ status: 502, contentType: "text/html", body: "<h1>Bad Gateway</h1>" });
    });
    await page.goto(`${cp.url}/#/w/${live.id}`);
    const log = page.getByRole("region", { name: /^build \d+ log$/ });
    await log.waitFor();
    // The log's lines arrive once the stream is opened again.
    await log.locator("pre div").first().waitFor({ timeout: 20_000 });
    expect(refused).toBe(1);
    await page.close();
  });
});
