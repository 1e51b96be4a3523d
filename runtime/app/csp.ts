/**
 * The Content-Security-Policy. Local mode keeps helmet's strict default. Hosted mode with web sign-in adds
 * what Clerk's browser SDK needs and nothing more, per Clerk's "Configure Clerk Content-Security-Policy
 * headers" (https://clerk.com/docs/guides/secure/best-practices/csp-headers): the Frontend API in script-src
 * and connect-src, Cloudflare's bot protection in script-src and frame-src, img.clerk.com in img-src,
 * `worker-src 'self' blob:`, and `'unsafe-inline'` styles (already in helmet's default style-src).
 */
import type { AuthConfig } from "../platform/config.ts";

const CLOUDFLARE_CHALLENGES = "https://challenges.cloudflare.com";
const CLERK_IMAGES = "https://img.clerk.com";

type Directives = Record<string, string[]>;

/**
 * null: helmet's defaults as they are. `voiceOrigin`: Deepgram's live endpoint (wss://…), which the browser
 * streams microphone audio to directly when voice is on.
 */
export function cspDirectives(auth: AuthConfig, voiceOrigin?: string): Directives | null {
  const voice = voiceOrigin ? [voiceOrigin] : [];
  if (auth.mode !== "hosted" || !auth.web)
    return voice.length ? { "connect-src": ["'self'", ...voice] } : null;
  const { frontendApi, clerkJsUrl, clerkUiUrl } = auth.web;
  // The scripts may be served from elsewhere than the Frontend API (CLERK_JS_URL, CLERK_UI_URL); their
  // origin serves the scripts' own lazily loaded chunks too.
  const clerk = [...new Set([frontendApi, new URL(clerkJsUrl).origin, new URL(clerkUiUrl).origin])];
  return {
    "script-src": ["'self'", ...clerk, CLOUDFLARE_CHALLENGES],
    "connect-src": ["'self'", ...clerk, ...voice],
    "img-src": ["'self'", "data:", CLERK_IMAGES],
    "frame-src": ["'self'", CLOUDFLARE_CHALLENGES],
    "worker-src": ["'self'", "blob:"],
    "style-src": ["'self'", "https:", "'unsafe-inline'"],
  };
}
