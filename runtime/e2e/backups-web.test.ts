/**
 * The Backups panel in Chromium at 360 px, on a local-mode workspace whose backups go to the default
 * repository under the data dir (the local-repository kind, end to end): back up now shows its live state,
 * the snapshot appears with its size, and its download is the snapshot as .tar.gz.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import type { Browser } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import { RESTIC_MISSING } from "../../box/testing/restic.ts";
import { ensureWebBuild } from "../app/web-build.ts";
import { createLogger } from "../platform/logger.ts";
import { HAVE_CHROMIUM, launchChromium } from "../test/browser.ts";
import { createReadyWorkspace, startLocalControlPlane } from "../test/local-control-plane.ts";

const haveRestic = RESTIC_MISSING === null;
if (!haveRestic) console.warn(`backups web test skipped: ${RESTIC_MISSING}`);

describe.skipIf(!HAVE_CHROMIUM || !haveRestic)("the Backups panel on a phone", async () => {
  if (!HAVE_CHROMIUM || !haveRestic) return;
  await ensureWebBuild(createLogger("silent"));
  const cp = await startLocalControlPlane();
  let browser: Browser | undefined;
  afterAll(async () => {
    await browser?.close();
  });

  it("backs up from the button, lists the snapshot and downloads it, at 360 px", async () => {
    const workspaceId = await createReadyWorkspace(cp, "phone-backups");
    const user = join(cp.workspacesRoot, workspaceId, "volume", "user");
    writeFileSync(join(user, "projects", "hello.txt"), "hello from the phone\n");
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
    const panel = page.getByRole("region", { name: "Backups" });
    await panel.getByText("Last backup: none yet").waitFor();
    await panel.getByRole("button", { name: "Back up now" }).click();
    // Live state while it runs, then the snapshot in the list.
    await panel.getByRole("button", { name: /Backing up/ }).waitFor();
    const restore = panel.getByRole("button", { name: /Restore snapshot [0-9a-f]{8}/ });
    await restore.waitFor({ timeout: 60_000 });
    await panel.getByText(/Last backup: done/).waitFor({ timeout: 20_000 });
    await panel.getByText("by you").waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth - innerWidth)).toBeLessThanOrEqual(
      0,
    );
    await panel.scrollIntoViewIfNeeded();
    await panel.screenshot({
      path: fileURLToPath(new URL("../web/docs/backups-phone.png", import.meta.url)),
    });

    const href = await panel.getByRole("link", { name: "Download" }).getAttribute("href");
    expect(href).toMatch(new RegExp(`^/api/v1/workspaces/${workspaceId}/backups/[0-9a-f]{64}/export$`));
    const res = await ctx.request.get(`${cp.url}${href}`);
    expect(res.status()).toBe(200);
    const tar = gunzipSync(await res.body()).toString("latin1");
    expect(tar).toContain("user/projects/hello.txt");
    expect(tar).toContain("hello from the phone");
    await ctx.close();
  }, 120_000);
});
