/**
 * What the web client needs to load Clerk's browser SDK, derived from the publishable key the way Clerk's own
 * loaders do it (@clerk/shared `loadClerkJsScript`: `clerkJSScriptUrl`, `clerkUIScriptUrl`, `buildScriptHost`).
 * The key is `pk_test_` or `pk_live_` + base64("<Frontend API host>$"); the scripts are served by that host.
 */

/**
 * Majors of the browser SDK that pair with our @clerk/backend 3.x (its @clerk/shared 4.x defaults to clerk-js
 * 6 and @clerk/ui 1). clerk-js 6 no longer bundles the sign-in components: they come from @clerk/ui, which
 * registers `window.__internal_ClerkUICtor` for `Clerk.load({ ui: { ClerkUI } })`.
 */
export const CLERK_JS_MAJOR = "6";
export const CLERK_UI_MAJOR = "1";

// A DNS name with an optional port: the decoded host ends up in a CSP header and a script URL, so nothing else.
const HOST =
  /^(?=.{1,253}(:|$))[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+(:\d{1,5})?$/i;

/** The Frontend API host a publishable key names, or null when the key is not well formed. */
export function frontendApiFromPublishableKey(key: string): string | null {
  const m = /^pk_(test|live)_([A-Za-z0-9+/=_-]+)$/.exec(key);
  if (!m) return null;
  const decoded = Buffer.from(m[2]!, "base64").toString("utf8");
  if (!decoded.endsWith("$")) return null;
  const host = decoded.slice(0, -1);
  return HOST.test(host) ? host.toLowerCase() : null;
}

export interface ClerkFrontend {
  publishableKey: string;
  /** Clerk's Frontend API origin, `https://<host>`: the SDK talks to it. */
  frontendApi: string;
  clerkJsUrl: string;
  clerkUiUrl: string;
}

export function clerkFrontend(
  publishableKey: string,
  overrides: { clerkJsUrl?: string | undefined; clerkUiUrl?: string | undefined } = {},
): ClerkFrontend {
  const host = frontendApiFromPublishableKey(publishableKey);
  if (!host) throw new Error("malformed Clerk publishable key");
  return {
    publishableKey,
    frontendApi: `https://${host}`,
    clerkJsUrl:
      overrides.clerkJsUrl ?? `https://${host}/npm/@clerk/clerk-js@${CLERK_JS_MAJOR}/dist/clerk.browser.js`,
    clerkUiUrl: overrides.clerkUiUrl ?? `https://${host}/npm/@clerk/ui@${CLERK_UI_MAJOR}/dist/ui.browser.js`,
  };
}
