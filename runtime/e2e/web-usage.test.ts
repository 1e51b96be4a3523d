/**
 * The Usage page in Chromium: a phone (360×740) and a desktop show this period's minutes against the plan,
 * a bar per day of the month and the minutes per workspace, without sideways scrolling, and the page has
 * no serious accessibility problem (axe-core). Minutes are metered by the real tick from an instance's
 * interval; the control plane is a test one (scripted driver: no box is needed to show usage).
 */
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureWebBuild } from "../app/web-build.ts";
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { createLogger } from "../platform/logger.ts";
import { insertInstance } from "../test/billing.ts";
import { accessibilityProblems, HAVE_CHROMIUM, launchChromium, RESULTS } from "../test/browser.ts";
import { startTestControlPlane } from "../test/control-plane.ts";
import { insertWorkspace } from "../test/fixtures.ts";

describe.skipIf(!HAVE_CHROMIUM)("the Usage page in Chromium", async () => {
  if (!HAVE_CHROMIUM) return;
  await ensureWebBuild(createLogger("silent"));
  const cp = await startTestControlPlane({
    BERTH_BILLING_PLANS: JSON.stringify({ hobby: { includedMinutes: 600, overage: "stop" } }),
  });
  let browser: Browser;

  beforeAll(async () => {
    const owner = await upsertUser(cp.deps.store, LOCAL_OWNER_EXTERNAL_ID, { isAdmin: true });
    const ws = await insertWorkspace(cp.deps.database.db, owner.userId, {
      name: "phone-box",
      state: "hibernated",
    });
    const start = new Date();
    start.setUTCDate(1);
    start.setUTCHours(0, 0, 0, 0);
    // 90 minutes on the first of the month.
    await insertInstance(cp.deps.database.pool, ws.id, start, new Date(start.getTime() + 90 * 60_000));
    await cp.billing.meter.tick();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  const open = async (viewport: { width: number; height: number }, mobile: boolean): Promise<Page> => {
    const ctx = await browser.newContext({ viewport, isMobile: mobile, hasTouch: mobile, bypassCSP: true });
    const page = await ctx.newPage();
    await page.goto(cp.loginUrl!);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    await page.getByRole("link", { name: "Usage" }).click();
    await page.getByRole("heading", { name: "Usage" }).waitFor();
    return page;
  };

  for (const [name, viewport, mobile] of [
    ["phone", { width: 360, height: 740 }, true],
    ["desktop", { width: 1280, height: 800 }, false],
  ] as const) {
    it(`shows minutes, the plan, a bar per day and each workspace on a ${name}`, async () => {
      const page = await open(viewport, mobile);
      try {
        expect(await page.getByTestId("usage-minutes").textContent()).toBe("1 h 30 min");
        expect(await page.locator("main").textContent()).toContain("hobby");
        const days = new Date(
          Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth() + 1, 0),
        ).getUTCDate();
        expect(await page.locator(".usage-bar").count()).toBe(days);
        expect(await page.locator(".usage-list li").textContent()).toContain("phone-box");
        // Nothing wider than the screen.
        expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(
          viewport.width,
        );
        const serious = await accessibilityProblems(page, "usage");
        expect(serious).toEqual([]);
        await page.screenshot({ path: `${RESULTS}usage-${name}.png`, fullPage: true });
      } finally {
        await page.context().close();
      }
    });
  }
});
