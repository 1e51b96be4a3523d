/**
 * Personal API tokens: long-lived credentials for the `berth` client and scripts, which cannot keep a
 * Clerk session (it lives a minute). A token is `berth_pat_` and 256 random bits; only its SHA-256 is
 * stored, and the secret is returned once, by `createApiToken`. Every token expires (90 days unless asked
 * otherwise, at most a year) and can be revoked; creating and revoking are audited.
 *
 * Creating a token takes a web sign-in (a Clerk session, or local mode's session or login token), never
 * an API token: a leaked token cannot mint itself successors that outlive its revocation. Listing and
 * revoking work with either, since they can only reduce access.
 */
import { randomBytes } from "node:crypto";
import { Conflict, Forbidden, NotFound } from "../../platform/errors.ts";
import type { ApiTokenRow } from "../../store/api-tokens.ts";
import type { AuthorizedStore } from "../../store/store.ts";

export const API_TOKEN_PREFIX = "berth_pat_";
/** Characters of the secret, after the prefix, kept for display ("berth_pat_Ab12Cd…"). */
const DISPLAY_CHARS = 6;
export const DEFAULT_TOKEN_DAYS = 90;
export const MAX_TOKEN_DAYS = 365;
/** Working (unrevoked, unexpired) tokens per user: plenty for devices and scripts, a bound on the table. */
export const MAX_ACTIVE_TOKENS = 50;
/** `last_used_at` is written at most this often per token. */
export const TOUCH_EVERY_SECONDS = 60;

export function isApiTokenSecret(bearer: string): boolean {
  return bearer.startsWith(API_TOKEN_PREFIX);
}

export function listApiTokens(scope: AuthorizedStore): Promise<ApiTokenRow[]> {
  return scope.apiTokens.list();
}

export async function createApiToken(
  scope: AuthorizedStore,
  input: { name: string; expiresInDays?: number | undefined; viaApiToken: boolean },
  ip: string,
): Promise<{ token: ApiTokenRow; secret: string }> {
  if (input.viaApiToken)
    throw new Forbidden(
      "token_needs_web_session",
      "an API token cannot create tokens; sign in to the web app and create one on its API tokens page",
    );
  const days = input.expiresInDays ?? DEFAULT_TOKEN_DAYS;
  const secret = `${API_TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`;
  const prefix = secret.slice(0, API_TOKEN_PREFIX.length + DISPLAY_CHARS);
  const expiresAt = new Date(Date.now() + days * 86_400_000);
  const token = await scope.transaction(async (tx) => {
    if ((await tx.apiTokens.countActive()) >= MAX_ACTIVE_TOKENS)
      throw new Conflict(
        "token_limit",
        `you have ${MAX_ACTIVE_TOKENS} working API tokens; revoke one you no longer use first`,
      );
    const row = await tx.apiTokens.create({ name: input.name, secret, prefix, expiresAt });
    await tx.audit({
      action: "api_token.create",
      targetType: "api_token",
      targetId: row.id,
      ip,
      details: { name: row.name, prefix, expiresAt: expiresAt.toISOString() },
    });
    return row;
  });
  return { token, secret };
}

export async function revokeApiToken(scope: AuthorizedStore, id: string, ip: string): Promise<ApiTokenRow> {
  return scope.transaction(async (tx) => {
    const row = await tx.apiTokens.revoke(id);
    if (!row) throw new NotFound("token");
    await tx.audit({
      action: "api_token.revoke",
      targetType: "api_token",
      targetId: row.id,
      ip,
      details: { name: row.name, prefix: row.prefix },
    });
    return row;
  });
}
