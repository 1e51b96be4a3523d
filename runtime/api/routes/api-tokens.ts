import { z } from "zod";
import {
  createApiToken,
  DEFAULT_TOKEN_DAYS,
  listApiTokens,
  MAX_TOKEN_DAYS,
  revokeApiToken,
} from "../../domain/identity/api-tokens.ts";
import type { ApiTokenRow } from "../../store/api-tokens.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";
import { doc, timestamp } from "../openapi/doc.ts";

const createBody = z
  .object({
    name: z.string().trim().min(1).max(64).describe("what the token is for, e.g. 'laptop' or 'CI'"),
    expiresInDays: z
      .number()
      .int()
      .min(1)
      .max(MAX_TOKEN_DAYS)
      .optional()
      .describe(`days until it stops working (default ${DEFAULT_TOKEN_DAYS})`),
  })
  .strict();

/** A token as the API shows it: never its secret (only the display prefix), except once at creation. */
export const ApiToken = z.object({
  id: z.string(),
  name: z.string(),
  prefix: z.string().describe("the secret's first characters, to tell tokens apart"),
  createdAt: timestamp,
  lastUsedAt: timestamp.nullable().describe("updated at most once a minute"),
  expiresAt: timestamp,
  revokedAt: timestamp.nullable(),
});

const present = (t: ApiTokenRow): z.input<typeof ApiToken> => ({
  id: t.id,
  name: t.name,
  prefix: t.prefix,
  createdAt: t.createdAt,
  lastUsedAt: t.lastUsedAt,
  expiresAt: t.expiresAt,
  revokedAt: t.revokedAt,
});

/**
 * Personal API tokens (`Authorization: Bearer berth_pat_…`) for the `berth` client and scripts, in hosted
 * and local mode. Creating one takes a web sign-in, not an API token (domain/identity/api-tokens.ts).
 */
export function apiTokenRoutes(router: ApiRouter, deps: AppDeps): void {
  // Token writes are credential changes: limited per user, across replicas, like other credential mints.
  const writes = deps.store.rateLimiter({ name: "api-token", points: 30, durationSeconds: 60 });

  const listDoc = doc({
    summary: "Your personal API tokens (never their secrets)",
    tag: "tokens",
    responses: { 200: z.object({ tokens: z.array(ApiToken) }) },
  });
  router.get("/api/v1/tokens", listDoc, async (ctx) => {
    ctx.body = { tokens: (await listApiTokens(ctx.state.scope)).map(present) };
  });

  const createDoc = doc({
    summary: "Create a personal API token; its secret is in this answer only",
    description:
      "Needs a web sign-in (a Clerk session, or local mode's session or login token): an API token " +
      "cannot create tokens (403 token_needs_web_session). At most 50 working tokens per user (409 token_limit).",
    tag: "tokens",
    body: createBody,
    responses: {
      201: z.object({
        token: ApiToken,
        secret: z.string().describe("berth_pat_…: shown once; store it now"),
      }),
    },
    errors: [403, 409],
  });
  router.post("/api/v1/tokens", createDoc, async (ctx) => {
    const input = parseInput(createBody, ctx.request.body ?? {});
    await writes(ctx.state.actor.userId);
    const { token, secret } = await createApiToken(
      ctx.state.scope,
      { ...input, viaApiToken: ctx.state.viaApiToken === true },
      ctx.ip,
    );
    ctx.set("Cache-Control", "no-store");
    ctx.status = 201;
    ctx.body = { token: present(token), secret };
  });

  const revokeDoc = doc({
    summary: "Revoke one of your API tokens: it stops working at once",
    tag: "tokens",
    responses: { 200: z.object({ token: ApiToken }) },
    errors: [404],
  });
  router.delete("/api/v1/tokens/:id", revokeDoc, async (ctx) => {
    await writes(ctx.state.actor.userId);
    ctx.body = { token: present(await revokeApiToken(ctx.state.scope, ctx.params.id!, ctx.ip)) };
  });
}
