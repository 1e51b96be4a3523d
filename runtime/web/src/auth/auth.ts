/**
 * How the web client proves who it is, in one place. Local mode: the HttpOnly session cookie from the printed
 * sign-in link, so nothing to add to requests. Hosted mode: Clerk; every API call carries
 * `Authorization: Bearer <session token>` (tokens live about a minute; clerk-js renews them), while
 * EventSource, which cannot send headers, rides on the `__session` cookie clerk-js keeps on this domain
 * (the server accepts that cookie on GET only).
 */
import type { BrowserClerk } from "./clerk.ts";

export type AuthState =
  | { mode: "local" }
  /** Hosted, but the server has no CLERK_PUBLISHABLE_KEY: the API works with tokens, the web cannot sign in. */
  | { mode: "hosted-unconfigured" }
  | { mode: "hosted-failed"; reason: string }
  | { mode: "hosted"; clerk: BrowserClerk };

type ServerAuthConfig =
  | { mode: "local" }
  | { mode: "hosted"; publishableKey: null }
  | { mode: "hosted"; publishableKey: string; clerkJsUrl: string; clerkUiUrl: string };

let state: AuthState = { mode: "local" };

/** Asks the server how to sign in and, in hosted mode, loads Clerk. Call once, before any API call. */
export async function startAuth(): Promise<AuthState> {
  const res = await fetch("/api/v1/auth/config", { credentials: "same-origin" });
  if (!res.ok) throw new Error(`auth config: HTTP ${res.status}`);
  const config = (await res.json()) as ServerAuthConfig;
  if (config.mode === "local") state = { mode: "local" };
  else if (config.publishableKey === null) state = { mode: "hosted-unconfigured" };
  else {
    try {
      const { loadClerk } = await import("./clerk.ts");
      state = { mode: "hosted", clerk: await loadClerk(config) };
    } catch (err) {
      state = { mode: "hosted-failed", reason: err instanceof Error ? err.message : String(err) };
    }
  }
  return state;
}

/** Headers that authenticate an API request. */
export async function authHeaders(): Promise<Record<string, string>> {
  if (state.mode !== "hosted") return {};
  const token = await state.clerk.session?.getToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** False when we know without asking the server that nobody is signed in. */
export function maybeSignedIn(): boolean {
  if (state.mode === "hosted") return Boolean(state.clerk.session);
  return state.mode === "local";
}

/** Calls back whenever the signed-in session changes (sign-in, sign-out, switch); returns the unsubscribe. */
export function onSessionChange(callback: () => void): () => void {
  if (state.mode !== "hosted") return () => {};
  let last = state.clerk.session?.id ?? null;
  return state.clerk.addListener(({ session }) => {
    const now = session?.id ?? null;
    if (now !== last) {
      last = now;
      callback();
    }
  });
}

export async function signOut(): Promise<void> {
  if (state.mode === "hosted") {
    await state.clerk.signOut();
    return;
  }
  await fetch("/api/v1/auth/logout", { method: "POST", credentials: "same-origin" });
}
