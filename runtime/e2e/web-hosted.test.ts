/**
 * Hosted-mode web sign-in in a real browser (Debian's Chromium driven by playwright-core) against a real
 * control plane and a fake Clerk Frontend API on loopback (runtime/test/fake-clerk.ts): sign in through the
 * Clerk sign-in component, land on the workspaces, create one and watch its build log stream over SSE (which
 * authenticates with Clerk's `__session` cookie), with API calls carrying the Bearer token; then sign out.
 */
import type { Browser, Page, Request } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureWebBuild } from "../app/web-build.ts";
import { createLogger } from "../platform/logger.ts";
import { freePort } from "../store/embedded.ts";
import { HAVE_CHROMIUM, launchChromium, RESULTS } from "../test/browser.ts";
import { publishableKey } from "../test/clerk.ts";
import { startTestControlPlane } from "../test/control-plane.ts";
import { startFakeClerk } from "../test/fake-clerk.ts";

describe.skipIf(!HAVE_CHROMIUM)("hosted-mode web sign-in in Chromium", async () => {
  if (!HAVE_CHROMIUM) return;
  await ensureWebBuild(createLogger("silent"));
  // azp must name the web origin, so the port is chosen before the control plane starts.
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const clerk = await startFakeClerk(origin);
  afterAll(() => clerk.close());
  const cp = await startTestControlPlane({
    BERTH_PORT: String(port),
    CLERK_JWT_KEY: clerk.keys.jwtKey,
    CLERK_PUBLISHABLE_KEY: publishableKey("clerk.berth.test"),
    CLERK_JS_URL: clerk.clerkJsUrl,
    CLERK_UI_URL: clerk.clerkUiUrl,
    BERTH_AUTHORIZED_PARTIES: origin,
    BERTH_LOCAL_TOKEN: "",
  });
  cp.driver.script("start", { kind: "succeed", steps: ["provision server", "attach volume"] });
  // The build is held running until the page has shown its first steps: they arrive live, over SSE.
  let releaseBuild!: () => void;
  cp.driver.gate = new Promise<void>((r) => {
    releaseBuild = r;
  });

  let browser: Browser;
  let page: Page;
  const requests: Request[] = [];
  const pageErrors: string[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("request", (r) => requests.push(r));
    page.on("pageerror", (e) => pageErrors.push(e.message));
    page.on("console", (m) => {
      if (m.type() === "error") pageErrors.push(m.text());
    });
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("shows Clerk's sign-in, loaded from CLERK_JS_URL under the hosted CSP", async () => {
    await page.goto(origin);
    await page.getByRole("heading", { name: "Sign in to Berth" }).waitFor();
    const script = page.locator(`script[src="${clerk.clerkJsUrl}"]`);
    expect(await script.getAttribute("data-clerk-publishable-key")).toBe(publishableKey("clerk.berth.test"));
    expect(pageErrors.filter((e) => /Content Security Policy/i.test(e))).toEqual([]);
  });

  it("signs in and reaches the workspaces, asking /api/v1/me with the Bearer token", async () => {
    const me = page.waitForRequest((r) => new URL(r.url()).pathname === "/api/v1/me");
    await page.getByLabel("Email address").fill("alice@example.com");
    await page.getByRole("button", { name: "Continue" }).click();
    expect((await me).headers().authorization).toMatch(/^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    const cookies = await page.context().cookies(origin);
    expect(cookies.find((c) => c.name === "__session")?.value).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const { rows } = await cp.deps.database.pool.query(
      "SELECT 1 FROM users WHERE external_id LIKE 'user_fake_%'",
    );
    expect(rows).toHaveLength(1);
  });

  it("creates a workspace (POST with Bearer) and streams its build log over SSE with the cookie", async () => {
    await page.getByLabel("Name your workspace").fill("hosted");
    await page.getByRole("button", { name: "Create workspace" }).click();
    await expect
      .poll(() => page.locator(".build-log").textContent(), { timeout: 30_000 })
      .toContain("provision server");
    cp.driver.gate = null;
    releaseBuild();
    await expect
      .poll(() => page.locator(".build-log").textContent(), { timeout: 30_000 })
      .toContain("succeeded");

    const create = requests.find(
      (r) => r.method() === "POST" && new URL(r.url()).pathname === "/api/v1/workspaces",
    );
    expect(create?.headers().authorization).toMatch(/^Bearer /);
    const log = requests.find((r) => /^\/api\/v1\/builds\/[^/]+\/log$/.test(new URL(r.url()).pathname));
    expect(log).toBeDefined();
    // EventSource cannot send headers: it got in on the `__session` cookie alone.
    const headers = await log!.allHeaders();
    expect(headers.authorization).toBeUndefined();
    expect(headers.cookie).toMatch(/(^|; )__session=/);
    expect((await log!.response())?.status()).toBe(200);
    await page.screenshot({ path: `${RESULTS}hosted-workspace.png`, fullPage: true });
  });

  it("signs out from the top bar and is back at Clerk's sign-in", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in to Berth" }).waitFor();
    // Clerk clears its cookie on its own schedule, which may come after the sign-in page shows.
    await expect
      .poll(async () => (await page.context().cookies(origin)).find((c) => c.name === "__session"), {
        timeout: 30_000,
      })
      .toBeUndefined();
    // Without Clerk's session the API refuses the browser.
    const status = await page.evaluate(async () => (await fetch("/api/v1/me")).status);
    expect(status).toBe(401);
    expect(pageErrors.filter((e) => /Content Security Policy/i.test(e))).toEqual([]);
  });
});
