/**
 * Searching the central log store (store/logs.ts): a workspace's owner reads their box's lines and the
 * control plane's lines about it; admins read every line. Newest first, a page at a time.
 */
import { z } from "zod";
import { operatorFor } from "../../store/actors.ts";
import { LOG_LEVELS, LOG_SOURCES, type LogPage } from "../../store/logs.ts";
import type { ApiRouter, AppContext, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";
import { doc, timestamp } from "../openapi/doc.ts";

// Postgres refuses the year 0 (and anything before it, after the offset is applied) and NUL in text: both
// would fail the query with a 500 instead of naming the parameter.
const isoTime = z.iso
  .datetime({ offset: true, error: "must be an ISO 8601 time with an offset, e.g. 2026-12-05T12:00:00Z" })
  .transform((v) => new Date(v))
  .refine((d) => d.getUTCFullYear() >= 1, "must be in the year 1 or later");

const searchFields = z.object({
  since: isoTime.optional().describe("lines at or after this time"),
  until: isoTime.optional().describe("lines before this time"),
  level: z.enum(LOG_LEVELS).optional().describe("this level and above"),
  source: z.enum(LOG_SOURCES).optional().describe("agent: the box; control-plane: the server"),
  q: z
    .string()
    .min(1)
    .max(200)
    .refine((q) => !q.includes("\u0000"), "must not contain NUL characters")
    .optional()
    .describe("case-insensitive text the message contains"),
  limit: z.coerce
    .number({ error: "must be a number" })
    .int("must be a whole number")
    .min(1, "must be between 1 and 500")
    .max(500, "must be between 1 and 500")
    .default(100),
  cursor: z.string().max(200).optional().describe("`nextCursor` of the previous page"),
});
const untilAfterSince = (q: { since?: Date | undefined; until?: Date | undefined }) =>
  !q.since || !q.until || q.since < q.until;
const searchQuery = searchFields.refine(untilAfterSince, { message: "must be after since", path: ["until"] });

const LogEntry = z.object({
  id: z.number().int(),
  time: timestamp,
  workspaceId: z.string().nullable(),
  instanceId: z.string().nullable(),
  source: z.enum(LOG_SOURCES),
  level: z.enum(LOG_LEVELS),
  message: z.string().describe("secret-shaped values are redacted before storage"),
  fields: z.record(z.string(), z.unknown()),
  traceId: z.string().nullable().describe("OpenTelemetry trace id of the request that logged it"),
});
const Page = z.object({
  entries: z.array(LogEntry),
  nextCursor: z.string().nullable().describe("pass as `cursor` for older lines; null on the last page"),
});

const present = (page: LogPage) => ({ entries: page.entries, nextCursor: page.nextCursor });

export function logRoutes(router: ApiRouter, deps: AppDeps): void {
  router.get(
    "/api/v1/workspaces/:id/logs",
    doc({
      summary: "Search a workspace's logs",
      description:
        "Lines its box agent shipped and the control plane's lines about it, newest first. Kept for BERTH_LOG_RETENTION_DAYS.",
      query: searchQuery,
      responses: { 200: Page },
      errors: [400, 404],
    }),
    async (ctx) => {
      const query = parseInput(searchQuery, ctx.query, "query");
      ctx.body = present(await ctx.state.scope.logs.search({ ...query, workspaceId: ctx.params.id! }));
    },
  );

  const adminQuery = searchFields
    .extend({ workspace: z.string().optional().describe("one workspace's lines only") })
    .refine(untilAfterSince, { message: "must be after since", path: ["until"] });
  router.get(
    "/api/v1/admin/logs",
    doc({
      summary: "Admins: search every log line",
      description: "Every workspace's and the control plane's own lines (warnings and above), newest first.",
      tag: "admin",
      query: adminQuery,
      responses: { 200: Page },
      errors: [400, 404],
    }),
    async (ctx: AppContext) => {
      const { workspace, ...query } = parseInput(adminQuery, ctx.query, "query");
      // As the operator on the admin's behalf; anyone else gets 404, as if the route did not exist.
      const operator = deps.store.as(operatorFor(ctx.state.actor));
      ctx.body = present(
        await operator.logs.search({ ...query, ...(workspace ? { workspaceId: workspace } : {}) }),
      );
    },
  );
}
