/**
 * Hosted mode's browser side: Clerk's SDK, loaded at run time from where the control plane says (by default
 * the instance's Frontend API), exactly as Clerk's own loader does it: a script tag carrying
 * `data-clerk-publishable-key`, which clerk-js reads to create `window.Clerk`. clerk-js 6 no longer bundles
 * the sign-in components; @clerk/ui registers them as `window.__internal_ClerkUICtor` and `load()` takes it.
 * Never bundled, so local mode ships no Clerk code; main.tsx only reaches this through a dynamic import.
 */

/** The small part of clerk-js's `Clerk` this client uses. */
export interface ClerkSession {
  id: string;
  getToken(): Promise<string | null>;
}

export interface BrowserClerk {
  load(options?: { ui?: { ClerkUI?: unknown } }): Promise<void>;
  readonly session: ClerkSession | null | undefined;
  mountSignIn(node: HTMLDivElement, props?: Record<string, unknown>): void;
  unmountSignIn(node: HTMLDivElement): void;
  addListener(callback: (resources: { session?: ClerkSession | null }) => void): () => void;
  signOut(): Promise<void>;
}

interface ClerkGlobals {
  Clerk?: BrowserClerk;
  __internal_ClerkUICtor?: unknown;
}

export interface ClerkScripts {
  publishableKey: string;
  clerkJsUrl: string;
  clerkUiUrl: string;
}

function addScript(src: string, attributes: Record<string, string> = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.async = true;
    script.crossOrigin = "anonymous";
    for (const [name, value] of Object.entries(attributes)) script.setAttribute(name, value);
    script.addEventListener("load", () => resolve());
    script.addEventListener("error", () => reject(new Error(`could not load ${src}`)));
    script.src = src;
    document.head.append(script);
  });
}

export async function loadClerk(config: ClerkScripts): Promise<BrowserClerk> {
  const globals = window as unknown as ClerkGlobals;
  await Promise.all([
    addScript(config.clerkUiUrl),
    addScript(config.clerkJsUrl, { "data-clerk-publishable-key": config.publishableKey }),
  ]);
  const clerk = globals.Clerk;
  if (!clerk) throw new Error(`${config.clerkJsUrl} did not provide window.Clerk`);
  await clerk.load({ ui: { ClerkUI: globals.__internal_ClerkUICtor } });
  return clerk;
}
