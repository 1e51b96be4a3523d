/**
 * A fake Clerk Frontend API on loopback for browser tests: it serves a `clerk.browser.js` and a `ui.browser.js`
 * implementing the part of clerk-js 6 the web client uses (load with `ui.ClerkUI`, session.getToken,
 * mountSignIn with a real form, addListener, signOut), and mints session JWTs signed with a test RSA key.
 * Like clerk-js it keeps the current token in a first-party `__session` cookie and renews it before expiry.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type ClerkKeys, clerkKeys, signClerkSession } from "./clerk.ts";

export interface FakeClerk {
  keys: ClerkKeys;
  url: string;
  clerkJsUrl: string;
  clerkUiUrl: string;
  /** Session tokens minted so far. */
  minted: number;
  close(): Promise<void>;
}

export const TOKEN_SECONDS = 60;

// Runs in the page. Plain ES2020, no imports: it is what a script tag loads.
const CLERK_JS = `(() => {
  const script = document.currentScript;
  const base = new URL(".", script.src).href;
  const publishableKey = script.getAttribute("data-clerk-publishable-key");
  const listeners = new Set();
  let session = null;
  let renew = null;
  const emit = () => listeners.forEach((cb) => cb({ session, user: session && session.user }));
  const setCookie = (jwt) => { document.cookie = "__session=" + jwt + "; path=/; SameSite=Lax"; };
  async function mint(path, body) {
    const res = await fetch(base + path, { method: "POST", headers: { "content-type": "text/plain" }, body });
    if (!res.ok) throw new Error("fake Clerk: HTTP " + res.status);
    return res.json();
  }
  function makeSession(s) {
    return {
      id: s.sessionId,
      user: { id: s.userId, primaryEmailAddress: { emailAddress: s.email } },
      async getToken() {
        if (session === null) return null;
        const { jwt } = await mint("v1/client/sessions/" + s.sessionId + "/tokens", s.userId);
        setCookie(jwt);
        return jwt;
      },
    };
  }
  window.Clerk = {
    loaded: false,
    get session() { return session; },
    get user() { return session && session.user; },
    async load(options) {
      if (!publishableKey) throw new Error("fake Clerk: no data-clerk-publishable-key on the script tag");
      if (!options || !options.ui || !options.ui.ClerkUI) throw new Error("fake Clerk: clerk-js 6 needs ui.ClerkUI");
      this.loaded = true;
    },
    mountSignIn(node) {
      node.innerHTML =
        '<form class="fake-clerk"><h2>Sign in to Berth</h2>' +
        '<label for="fake-clerk-email">Email address</label>' +
        '<input id="fake-clerk-email" type="email" name="email" required>' +
        '<button type="submit">Continue</button></form>';
      node.querySelector("form").addEventListener("submit", async (e) => {
        e.preventDefault();
        const email = node.querySelector("input").value;
        const s = await mint("v1/client/sign_ins", email);
        setCookie(s.jwt);
        session = makeSession(s);
        clearInterval(renew);
        renew = setInterval(() => session && session.getToken(), ${(TOKEN_SECONDS / 2) * 1000});
        emit();
      });
    },
    unmountSignIn(node) { node.innerHTML = ""; },
    addListener(cb) {
      listeners.add(cb);
      cb({ session, user: session && session.user });
      return () => listeners.delete(cb);
    },
    async signOut() {
      session = null;
      clearInterval(renew);
      document.cookie = "__session=; path=/; max-age=0";
      emit();
    },
  };
})();`;

const UI_JS = "window.__internal_ClerkUICtor = function FakeClerkUI() {};";

async function body(req: IncomingMessage): Promise<string> {
  let s = "";
  for await (const chunk of req) s += chunk;
  return s;
}

/** `azp` of the tokens: the web origin, as Clerk sets it. */
export async function startFakeClerk(webOrigin: string): Promise<FakeClerk> {
  const keys = clerkKeys();
  let sessions = 0;
  const fake = { minted: 0 } as FakeClerk;
  const mint = async (userId: string) => {
    fake.minted++;
    const now = Math.floor(Date.now() / 1000);
    return signClerkSession(keys.privateKey, { azp: webOrigin, sub: userId, exp: now + TOKEN_SECONDS });
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    // Scripts are loaded with crossorigin=anonymous and the API is called cross-origin, as with real Clerk.
    res.setHeader("Access-Control-Allow-Origin", webOrigin);
    res.setHeader("Access-Control-Allow-Headers", "content-type");
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method === "OPTIONS") return res.writeHead(204).end();
    if (req.method === "GET" && (path === "/clerk.browser.js" || path === "/ui.browser.js")) {
      res.setHeader("Content-Type", "application/javascript");
      return res.end(path === "/ui.browser.js" ? UI_JS : CLERK_JS);
    }
    if (req.method === "POST" && path === "/v1/client/sign_ins") {
      const email = await body(req);
      const userId = `user_fake_${Buffer.from(email).toString("hex").slice(0, 16)}`;
      const sessionId = `sess_fake_${++sessions}`;
      res.setHeader("Content-Type", "application/json");
      return res.end(JSON.stringify({ jwt: await mint(userId), sessionId, userId, email }));
    }
    const tokens = /^\/v1\/client\/sessions\/([\w-]+)\/tokens$/.exec(path);
    if (req.method === "POST" && tokens) {
      res.setHeader("Content-Type", "application/json");
      return res.end(JSON.stringify({ jwt: await mint(await body(req)) }));
    }
    res.writeHead(404).end();
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(fake, {
    keys,
    url,
    clerkJsUrl: `${url}/clerk.browser.js`,
    clerkUiUrl: `${url}/ui.browser.js`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}
