/**
 * The workspace view's Box panel in Chromium at 360 px: the agent's heartbeats (sent over the real agent
 * API as the box's agent) show as load, memory and disk, the view follows new heartbeats without a reload,
 * and a disk past the threshold shows a warning; nothing overflows the phone's width.
 */
import { fileURLToPath } from "node:url";
import type { Browser } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import { ensureWebBuild } from "../app/web-build.ts";
import { createLogger } from "../platform/logger.ts";
import { sendHeartbeat } from "../test/agent.ts";
import { HAVE_CHROMIUM, launchChromium } from "../test/browser.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { waitFor } from "../test/wait.ts";

const GB = 1000 ** 3;

describe.skipIf(!HAVE_CHROMIUM)("the Box panel on a phone", async () => {
  if (!HAVE_CHROMIUM) return;
  await ensureWebBuild(createLogger("silent"));
  const cp = await startTestControlPlane();
  let agentToken = "";
  cp.driver.afterStart = (spec) => {
    agentToken = spec.secrets.agentToken;
  };
  let browser: Browser | undefined;
  afterAll(async () => {
    await browser?.close();
  });
  const created = await json(
    await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: { name: "phone" } }),
  );
  const workspaceId: string = created.workspace.id;
  await waitFor("the agent token", () => agentToken);
  const heartbeat = async (diskUsedPercent: number) => {
    const res = await sendHeartbeat(cp, agentToken, {
      loadAvg1: 0.5,
      memTotalBytes: 4 * GB,
      memAvailableBytes: 3 * GB,
      diskTotalBytes: 40 * GB,
      diskFreeBytes: ((100 - diskUsedPercent) / 100) * 40 * GB,
    });
    expect(res.status).toBe(200);
  };

  it("shows the box's figures, follows heartbeats and warns of a full disk, at 360 px", async () => {
    await heartbeat(40);
    browser = await launchChromium();
    const ctx = await browser.newContext({
      viewport: { width: 360, height: 740 },
      isMobile: true,
      hasTouch: true,
    });
    const page = await ctx.newPage();
    await page.goto(cp.loginUrl!);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    await page.goto(`${cp.url}/#/w/${workspaceId}`);
    const panel = page.getByRole("region", { name: "Box" });
    await panel.getByText("24 GB free of 40 GB").waitFor();
    await panel.getByText("25%").waitFor(); // memory
    expect(await panel.getByRole("alert").count()).toBe(0);

    // The next heartbeat reaches the open view by itself.
    await heartbeat(95);
    const warning = panel.getByRole("alert");
    await warning.waitFor();
    expect(await warning.textContent()).toContain("95% full");
    expect(await warning.isVisible()).toBe(true);
    expect(await page.evaluate(() => document.documentElement.scrollWidth - innerWidth)).toBeLessThanOrEqual(
      0,
    );
    await panel.scrollIntoViewIfNeeded();
    await panel.screenshot({
      path: fileURLToPath(new URL("../web/docs/telemetry-phone.png", import.meta.url)),
    });
    await ctx.close();
  }, 120_000);
});
