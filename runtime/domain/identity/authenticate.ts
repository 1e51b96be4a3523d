/**
 * Turns request credentials into an Actor. Used by the Koa middleware for HTTP routes and, directly, by
 * WebSocket upgrade handlers (Koa middleware never runs for upgrades).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Context, Next } from "koa";
import type { AuthConfig } from "../../platform/config.ts";
import { cookieValues } from "../../platform/cookies.ts";
import { Unauthenticated } from "../../platform/errors.ts";
import { SYSTEM, type UserActor } from "../../store/actors.ts";
import type { Store } from "../../store/store.ts";
import { upsertUser } from "./actor.ts";
import { isApiTokenSecret, TOUCH_EVERY_SECONDS } from "./api-tokens.ts";
import { verifyClerkSession } from "./clerk.ts";
import { SESSION_COOKIE, type SessionTokens } from "./session-cookie.ts";

/**
 * Clerk's session cookie, which clerk-js sets first-party on the app's domain. Hosted mode reads it so that
 * what cannot send headers (EventSource, a link opened in a tab) can still authenticate.
 */
export const CLERK_SESSION_COOKIE = "__session";

/** Methods that change nothing: the only ones a cookie Clerk sets SameSite=Lax may authenticate. */
const SAFE_METHODS = new Set(["GET", "HEAD"]);

export interface Credentials {
  authorization: string | undefined;
  sessionCookie: string | undefined;
  /**
   * Hosted mode: every `__session` value the request carries; used only when there is no Authorization
   * header. More than one is refused: a sibling site may have planted one for the parent domain.
   */
  clerkSessionCookies?: readonly string[] | undefined;
  /** The request's method; the Clerk cookie counts only for GET and HEAD, so leaving it out refuses it. */
  method?: string | undefined;
}

const digest = (s: string) => createHash("sha256").update(s).digest();

/** Where a person makes a new API token (the web app's page), named in the refusals of a dead one. */
export const TOKENS_PAGE = "/#/tokens";

/** Who the caller is, and whether a personal API token said so (token management needs a web sign-in). */
export interface Authenticated {
  actor: UserActor;
  viaApiToken: boolean;
}

export class Authenticator {
  readonly #store: Store;
  readonly #auth: AuthConfig;
  readonly #sessions: SessionTokens;
  readonly #localOwner: UserActor | null;
  readonly #localToken: string | null;
  #localTokenDigest: Buffer | undefined;

  constructor(deps: {
    store: Store;
    auth: AuthConfig;
    sessions: SessionTokens;
    localOwner: UserActor | null;
    localToken: string | null;
  }) {
    this.#store = deps.store;
    this.#auth = deps.auth;
    this.#sessions = deps.sessions;
    this.#localOwner = deps.localOwner;
    this.#localToken = deps.localToken;
  }

  /** Local mode's printed login token, exchanged for a session cookie. */
  checkLocalToken(token: string): UserActor | null {
    if (!this.#localToken || !this.#localOwner) return null;
    // Every preview request in local mode lands here: hash the stored token once, not on every call.
    this.#localTokenDigest ??= digest(this.#localToken);
    return timingSafeEqual(digest(token), this.#localTokenDigest) ? this.#localOwner : null;
  }

  async sessionFor(actor: Pick<UserActor, "userId" | "externalId" | "isAdmin">): Promise<string> {
    return this.#sessions.mint(actor.userId);
  }

  /** The actor, or a 401 naming what was wrong. */
  async resolve(creds: Credentials): Promise<UserActor> {
    return (await this.authenticate(creds)).actor;
  }

  /** `resolve`, also saying whether a personal API token was the credential. */
  async authenticate(creds: Credentials): Promise<Authenticated> {
    const bearer = /^Bearer\s+(\S+)$/i.exec(creds.authorization ?? "")?.[1];
    if (creds.authorization !== undefined && bearer === undefined) {
      throw new Unauthenticated("bad_authorization_header", "Authorization must be 'Bearer <token>'");
    }
    if (bearer !== undefined && isApiTokenSecret(bearer)) {
      return { actor: await this.#apiTokenUser(bearer), viaApiToken: true };
    }
    return { actor: await this.#resolveOther(creds, bearer), viaApiToken: false };
  }

  /** A personal API token's user; 401 with the reason when it is unknown, revoked or expired. */
  async #apiTokenUser(secret: string): Promise<UserActor> {
    const auth = this.#store.as(SYSTEM.auth);
    const token = await auth.apiTokens.findBySecret(secret);
    if (!token) throw new Unauthenticated("token_invalid", "API token is not valid");
    if (token.revokedAt)
      throw new Unauthenticated(
        "token_revoked",
        `this API token (${token.prefix}…) was revoked; create a new one at ${TOKENS_PAGE}`,
      );
    if (token.expiresAt.getTime() <= Date.now())
      throw new Unauthenticated(
        "token_expired",
        `this API token (${token.prefix}…) expired at ${token.expiresAt.toISOString()}; create a new one at ${TOKENS_PAGE}`,
      );
    const actor = await auth.users.find(token.userId);
    if (!actor) throw new Unauthenticated("token_invalid", "API token is not valid");
    // Most requests of a busy token find it used within the minute: no write, not even a statement.
    if (!token.lastUsedAt || Date.now() - token.lastUsedAt.getTime() >= TOUCH_EVERY_SECONDS * 1000)
      await auth.apiTokens.touch(token.id, TOUCH_EVERY_SECONDS);
    return actor;
  }

  async #resolveOther(creds: Credentials, bearer: string | undefined): Promise<UserActor> {
    if (bearer !== undefined) {
      if (this.#auth.mode === "hosted") {
        const externalId = await verifyClerkSession(bearer, this.#auth);
        return upsertUser(this.#store, externalId);
      }
      const owner = this.checkLocalToken(bearer);
      if (!owner) throw new Unauthenticated("token_invalid", "API token is not valid");
      return owner;
    }
    const clerkCookies = creds.clerkSessionCookies ?? [];
    if (this.#auth.mode === "hosted" && clerkCookies.length > 1) {
      throw new Unauthenticated(
        "session_cookie_ambiguous",
        "more than one __session cookie was sent; clear this site's cookies and sign in again",
      );
    }
    if (this.#auth.mode === "hosted" && clerkCookies.length === 1) {
      // SameSite=Lax still rides along on top-level cross-site navigations and is readable by any script on
      // the domain; a state change needs the header, which only our own page's script can add.
      if (!SAFE_METHODS.has(creds.method?.toUpperCase() ?? "")) {
        throw new Unauthenticated(
          "session_cookie_needs_bearer",
          "Clerk's session cookie is accepted on GET and HEAD only; send 'Authorization: Bearer <session token>'",
        );
      }
      const externalId = await verifyClerkSession(clerkCookies[0]!, this.#auth);
      return upsertUser(this.#store, externalId);
    }
    if (creds.sessionCookie) {
      const session = await this.#sessions.verify(creds.sessionCookie);
      const actor = session
        ? await this.#store.as(SYSTEM.auth).users.forSession(session.userId, session.issuedAtMs)
        : null;
      if (!actor) throw new Unauthenticated("session_invalid", "session expired or invalid; sign in again");
      return actor;
    }
    throw new Unauthenticated("unauthenticated", "sign in first: send 'Authorization: Bearer <token>'");
  }

  middleware() {
    return async (ctx: Context, next: Next) => {
      const authorization = ctx.get("authorization") || undefined;
      const sessionCookie = ctx.cookies.get(SESSION_COOKIE) ?? undefined;
      // SameSite=Strict keeps the session cookie off cross-site requests, but not off same-site ones from
      // another origin (any other port on the same host, a sibling subdomain): a change made with the cookie
      // must come from our own pages.
      if (sessionCookie && !authorization && !SAFE_METHODS.has(ctx.method) && !fromSameOrigin(ctx)) {
        throw new Unauthenticated(
          "session_cookie_cross_origin",
          "the session cookie changes nothing when the request comes from another origin",
        );
      }
      const { actor, viaApiToken } = await this.authenticate({
        authorization,
        sessionCookie,
        clerkSessionCookies: cookieValues(ctx.get("cookie") || undefined, CLERK_SESSION_COOKIE),
        method: ctx.method,
      });
      ctx.state.actor = actor;
      ctx.state.viaApiToken = viaApiToken;
      await next();
    };
  }
}

/**
 * Whether the browser says the request comes from a page of this origin: `Sec-Fetch-Site` when sent (every
 * current browser), else `Origin`'s host and port against the Host. The scheme is not compared: behind a
 * TLS proxy this server sees http while the page is https, and another port is another host here anyway.
 * Neither header (a non-browser client) counts as ours: the cookie only reaches a request a browser did
 * not make if its holder already has it.
 */
function fromSameOrigin(ctx: Context): boolean {
  const site = ctx.get("sec-fetch-site");
  if (site) return site === "same-origin";
  const origin = ctx.get("origin");
  if (!origin) return true;
  try {
    const url = new URL(origin);
    return url.origin !== "null" && url.host === ctx.host;
  } catch {
    return false;
  }
}
