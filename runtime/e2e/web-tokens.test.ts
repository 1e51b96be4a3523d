/**
 * The API tokens page in Chromium on a phone (360×740): a token is created in the UI, its secret shown once
 * with the `berth login` line, and it then authenticates the API; revoking it in the UI stops it. Nothing
 * is wider than the screen, and axe-core finds no serious accessibility problem.
 */
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureWebBuild } from "../app/web-build.ts";
import { createLogger } from "../platform/logger.ts";
import { accessibilityProblems, HAVE_CHROMIUM, launchChromium, RESULTS } from "../test/browser.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";

describe.skipIf(!HAVE_CHROMIUM)("the API tokens page in Chromium", async () => {
  if (!HAVE_CHROMIUM) return;
  await ensureWebBuild(createLogger("silent"));
  const cp = await startTestControlPlane();
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** Signs in with the local token and goes to the tokens page, as a user does. */
  const openTokensPage = async (page: Page) => {
    await page.goto(cp.loginUrl!);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    await page.getByRole("link", { name: "Tokens" }).click();
    await page.getByRole("heading", { name: "API tokens" }).waitFor();
  };

  it("creates a token on a phone, shows it once, and the token works until revoked", async () => {
    const ctx = await browser.newContext({
      viewport: { width: 360, height: 740 },
      isMobile: true,
      hasTouch: true,
      bypassCSP: true,
    });
    const page = await ctx.newPage();
    try {
      await openTokensPage(page);
      await page.getByText("No tokens yet.").waitFor();

      // An empty name is refused beside the field.
      await page.getByRole("button", { name: "Create token" }).click();
      await page.getByRole("alert").filter({ hasText: "Name the token" }).waitFor();

      await page.getByLabel("Name").fill("phone");
      await page.getByLabel("Expires after").selectOption("30");
      await page.getByRole("button", { name: "Create token" }).click();
      const secret = (await page.getByTestId("token-secret").textContent())!;
      expect(secret).toMatch(/^berth_pat_/);
      expect(await page.getByTestId("token-login").textContent()).toBe(`berth login ${cp.url}`);
      expect(await page.getByRole("button", { name: "copy the token" }).isVisible()).toBe(true);
      await page.getByRole("listitem").filter({ hasText: "phone" }).getByText("never used").waitFor();

      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
      const serious = await accessibilityProblems(page, "tokens");
      expect(serious).toEqual([]);
      await page.screenshot({ path: `${RESULTS}tokens-phone.png`, fullPage: true });

      // The token from the page authenticates the API.
      expect((await cp.api("/api/v1/me", { token: secret })).status).toBe(200);

      // Shown once: after "Done" and a reload, only the prefix is on the page.
      await page.getByRole("button", { name: "Done" }).click();
      await page.reload();
      await page.getByRole("heading", { name: "Your tokens" }).waitFor();
      await page.getByText(secret.slice(0, 16)).waitFor();
      expect(await page.locator("main").textContent()).not.toContain(secret);

      await page.getByRole("button", { name: "revoke token phone" }).click();
      await page.getByText(/^revoked/).waitFor();
      const refused = await cp.api("/api/v1/me", { token: secret });
      expect(refused.status).toBe(401);
      expect((await json(refused)).error.code).toBe("token_revoked");
    } finally {
      await ctx.close();
    }
  });

  it("creates one token for a double click on Create token", async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    try {
      await openTokensPage(page);
      const listed = async () =>
        (await json(await cp.api("/api/v1/tokens", { token: cp.localToken }))).tokens.length as number;
      const before = await listed();

      // The first creation is held at the network until the second click has landed.
      let posts = 0;
      let held: (() => Promise<void>) | null = null;
      await page.route("**/api/v1/tokens", (route) => {
        if (route.request().method() !== "POST") return route.continue();
        posts++;
        if (held) return route.continue();
        held = () => route.continue();
      });
      await page.getByLabel("Name").fill("ci");
      await page.getByRole("button", { name: "Create token" }).dblclick();
      await expect.poll(() => held !== null).toBe(true);
      await held!();
      const secret = (await page.getByTestId("token-secret").textContent())!;
      await page.getByRole("listitem").filter({ hasText: "ci" }).getByText("never used").first().waitFor();
      expect(posts).toBe(1);
      expect(await listed()).toBe(before + 1);
      expect((await cp.api("/api/v1/me", { token: secret })).status).toBe(200);
    } finally {
      await ctx.close();
    }
  });
});
