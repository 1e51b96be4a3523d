import { z } from "zod";
import { SESSION_COOKIE, SESSION_TTL_SECONDS } from "../../domain/identity/session-cookie.ts";
import { recordSignIn, signOut } from "../../domain/identity/sign-in.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { HttpError, parseInput } from "../errors.ts";
import { doc } from "../openapi/doc.ts";

const loginBody = z.object({ token: z.string().min(1).max(512) });

/**
 * Local mode sign-in: the printed login token becomes an HttpOnly session cookie. Public. Only failures are
 * rate-limited (per source and overall, with backoff): the right token is checked first, in constant time,
 * so no one who can reach the port can lock the owner out with wrong ones.
 */
export function loginRoutes(router: ApiRouter, deps: AppDeps): void {
  const loginDoc = doc({
    summary: "Local mode: exchange the login token for a session cookie",
    body: loginBody,
    responses: { 200: z.object({ user: z.object({ id: z.string() }) }) },
    errors: [404, 429],
  });
  router.post("/api/v1/auth/login", loginDoc, async (ctx) => {
    if (deps.config.auth.mode !== "local") {
      throw new HttpError(404, "not_found", "local login is disabled in hosted mode; sign in with Clerk");
    }
    const { token } = parseInput(loginBody, ctx.request.body);
    const actor = deps.authenticator.checkLocalToken(token);
    if (!actor) {
      await deps.limiters.login(ctx.ip);
      throw new HttpError(401, "token_invalid", "login token is not valid");
    }
    ctx.cookies.set(SESSION_COOKIE, await deps.authenticator.sessionFor(actor), {
      httpOnly: true,
      sameSite: "strict",
      secure: ctx.secure,
      maxAge: SESSION_TTL_SECONDS * 1000,
      path: "/",
    });
    await recordSignIn(deps.store.as(actor), ctx.ip);
    ctx.body = { user: { id: actor.userId } };
  });
}

/**
 * How the web client signs in. Public: the publishable key is public by design, and the client needs this
 * before anyone is signed in. Local mode answers without any Clerk detail, so its client loads no Clerk code.
 */
export function authConfigRoutes(router: ApiRouter, deps: AppDeps): void {
  const configDoc = doc({
    summary: "How clients sign in here: local token or Clerk (with its public keys)",
    responses: {
      200: z.union([
        z.object({ mode: z.literal("local") }),
        z.object({ mode: z.literal("hosted"), publishableKey: z.null() }),
        z.object({
          mode: z.literal("hosted"),
          publishableKey: z.string(),
          clerkJsUrl: z.string(),
          clerkUiUrl: z.string(),
        }),
      ]),
    },
  });
  router.get("/api/v1/auth/config", configDoc, (ctx) => {
    const { auth } = deps.config;
    ctx.set("Cache-Control", "no-cache");
    if (auth.mode === "local") {
      ctx.body = { mode: "local" };
    } else if (!auth.web) {
      ctx.body = { mode: "hosted", publishableKey: null };
    } else {
      const { publishableKey, clerkJsUrl, clerkUiUrl } = auth.web;
      ctx.body = { mode: "hosted", publishableKey, clerkJsUrl, clerkUiUrl };
    }
  });
}

/** Routes for the signed-in user. */
export function meRoutes(router: ApiRouter): void {
  const meDoc = doc({
    summary: "Who the credentials belong to",
    responses: { 200: z.object({ user: z.object({ id: z.string(), isAdmin: z.boolean() }) }) },
  });
  router.get("/api/v1/me", meDoc, (ctx) => {
    const { actor } = ctx.state;
    ctx.body = { user: { id: actor.userId, isAdmin: actor.isAdmin } };
  });

  const logoutDoc = doc({ summary: "Sign out: ends every web session of yours", responses: { 204: null } });
  router.post("/api/v1/auth/logout", logoutDoc, async (ctx) => {
    await signOut(ctx.state.scope, ctx.ip);
    ctx.cookies.set(SESSION_COOKIE, null, { path: "/" });
    ctx.status = 204;
  });
}
