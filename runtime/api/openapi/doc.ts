/**
 * One declaration per route, next to it, is both the route's OpenAPI entry and the shape of its answer:
 *
 *   router.get("/api/v1/workspaces", doc({ summary: "…", responses: { 200: WorkspaceList } }), async (ctx) => …)
 *
 * `doc(...)` is a Koa middleware placed before the handler. The document (openapi/document.ts) reads it off
 * the router's layers, so the method and path come from the route itself and cannot disagree with it; after
 * the handler it parses a JSON body through the response schema for the status it answered, which drops
 * every field the schema does not name and fails loudly (500) on a field it names wrongly. The schema is
 * therefore what the client receives, not a description that may drift from it.
 */
import type { Middleware } from "koa";
import { z } from "zod";

/** Server-Sent Events: each `event:` name and the JSON schema of its `data:`. */
export interface SseDoc {
  events: Record<string, z.ZodType>;
  /** Whether the stream carries `id:` lines a client can resume from with `Last-Event-ID`. */
  resumable?: boolean;
}

export interface RouteDoc {
  summary: string;
  description?: string;
  /** Groups operations in the document and on the docs page; defaults to the path's first segment. */
  tag?: string;
  /** Path parameters; each `:name` in the path not listed here is documented as a plain string. */
  params?: Record<string, z.ZodType>;
  query?: z.ZodObject;
  /** The JSON request body; the handler parses with the same schema (`parseInput`). */
  body?: z.ZodType;
  /**
   * Successful answers by status: a zod schema for a JSON body (which also shapes it), `null` for an empty
   * one (204), or a media type string for a body that is not JSON (HTML, Prometheus text).
   */
  responses: Partial<Record<number, z.ZodType | null | string>>;
  /** A 200 that is an SSE stream instead of a JSON body. */
  sse?: SseDoc;
  /** Error statuses this route answers beyond the ones every route may (400 for bad input, 401, 429, 500). */
  errors?: number[];
}

const DOC = Symbol("berth.route-doc");

interface DocumentedMiddleware extends Middleware {
  [DOC]: RouteDoc;
}

/** A body that is JSON we built (not a stream, a string, a buffer, or empty). */
function isJsonValue(body: unknown): boolean {
  if (body === null || typeof body !== "object") return false;
  if (Buffer.isBuffer(body) || typeof (body as { pipe?: unknown }).pipe === "function") return false;
  return true;
}

export function doc(spec: RouteDoc): Middleware {
  const middleware = (async (ctx, next) => {
    await next();
    const schema = spec.responses[ctx.status];
    if (schema instanceof z.ZodType && isJsonValue(ctx.body)) {
      const shaped = schema.safeParse(ctx.body);
      if (!shaped.success) {
        // A programming error: the handler built a body its own declaration does not allow.
        throw new Error(
          `${ctx.method} ${ctx.path} answered ${ctx.status} with a body its doc() does not allow: ${shaped.error.message}`,
        );
      }
      ctx.body = shaped.data;
    }
  }) as DocumentedMiddleware;
  middleware[DOC] = spec;
  return middleware;
}

/** The declaration among a route's middleware, if it has one. */
export function docOf(stack: readonly unknown[]): RouteDoc | undefined {
  for (const fn of stack) {
    const spec = (fn as Partial<DocumentedMiddleware>)[DOC];
    if (spec) return spec;
  }
  return undefined;
}

/** ISO 8601 on the wire; routes may hand over the Date a row holds, JSON gets the string. */
export const timestamp = z
  .union([z.date(), z.string()])
  .transform((v) => (typeof v === "string" ? v : v.toISOString()))
  .pipe(z.iso.datetime({ offset: true }));

/** `{ error: { code, message, requestId, …details } }`: every failure (runtime/api/errors.ts). */
export const ErrorBody = z.object({
  error: z
    .looseObject({
      code: z.string().describe("stable, machine-readable: e.g. not_found, invalid_input, token_invalid"),
      message: z.string().describe("one sentence for a person; names the field for invalid input"),
      requestId: z.string().describe("also in the X-Request-Id header; quote it in bug reports"),
      field: z.string().nullable().optional().describe("invalid_input: the offending field, e.g. body.name"),
    })
    .describe("extra keys give details of some errors"),
});
