/** The one error shape every route answers with: `{ error: { code, message, requestId } }`. */
import type { Context, Next } from "koa";
import type { z } from "zod";
import { DriverError, StackBusyError, StackNotFoundError } from "../../stacks/errors.ts";
import {
  Conflict,
  DomainError,
  Forbidden,
  Invalid,
  NotFound,
  PaymentRequired,
  RateLimited,
  Unauthenticated,
  Unavailable,
} from "../platform/errors.ts";
import type { Logger } from "../platform/logger.ts";
import { redactAddresses } from "../platform/redact.ts";

export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Record<string, string>;
  readonly extra: Record<string, unknown> | undefined;

  constructor(
    status: number,
    code: string,
    message: string,
    options: { headers?: Record<string, string>; extra?: Record<string, unknown> } = {},
  ) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.code = code;
    this.headers = options.headers ?? {};
    this.extra = options.extra;
  }
}

/** `a.b[2].c` style path for messages that name the offending field. */
export function fieldPath(path: PropertyKey[]): string {
  return path.reduce<string>(
    (acc, p) => (typeof p === "number" ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)),
    "",
  );
}

/** Validates input with zod and turns the first problem into a 400 that names the field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, where = "body"): z.infer<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = fieldPath(issue.path);
  throw new Invalid(
    "invalid_input",
    field ? `${where}.${field}: ${issue.message}` : `${where}: ${issue.message}`,
    {
      field: field || null,
    },
  );
}

interface BodyParserError {
  status?: number;
  type?: string;
  code?: unknown;
  message?: unknown;
}

export function errorMiddleware(log: Logger) {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined)
        throw new HttpError(404, "not_found", "no such route");
    } catch (err) {
      const e = toHttpError(err);
      if (e.status >= 500) log.error({ err }, "request failed");
      ctx.status = e.status;
      ctx.set(e.headers);
      ctx.body = { error: { code: e.code, message: e.message, requestId: ctx.state.requestId, ...e.extra } };
    }
  };
}

/** Each domain error's status; the subclasses are the whole vocabulary (runtime/platform/errors.ts). */
const STATUS = new Map<abstract new (...args: never[]) => DomainError, number>([
  [Invalid, 400],
  [Unauthenticated, 401],
  [PaymentRequired, 402],
  [Forbidden, 403],
  [NotFound, 404],
  [Conflict, 409],
  [RateLimited, 429],
  [Unavailable, 503],
]);

export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof DomainError) {
    const status = [...STATUS].find(([kind]) => err instanceof kind)?.[1] ?? 500;
    const headers: Record<string, string> =
      err instanceof RateLimited ? { "Retry-After": String(err.retryAfterSeconds) } : {};
    return new HttpError(status, err.code, err.message, { headers, extra: err.details });
  }
  // Driver errors (DESIGN §4): a stack busy with another operation is a conflict, a missing one a 404.
  if (err instanceof StackBusyError)
    return new HttpError(409, "stack_busy", "another operation holds this workspace's stack; retry shortly");
  if (err instanceof StackNotFoundError)
    return new HttpError(404, "not_found", "the workspace's stack does not exist");
  if (err instanceof DriverError) {
    return new HttpError(502, "driver_error", redactAddresses(`the workspace driver failed: ${err.message}`));
  }
  const e = err as BodyParserError;
  // The unread rest of the body would sit on a kept-alive connection and stall its next request: close it.
  if (e?.type === "entity.too.large")
    return new HttpError(413, "body_too_large", "request body is too large", {
      headers: { Connection: "close" },
    });
  // A body whose Content-Encoding does not match its bytes: zlib's errors carry Z_* codes (gzip, deflate),
  // its Brotli decoder's ERR__ERROR_* codes (br).
  if (typeof e?.code === "string" && /^(Z_|ERR__ERROR_)/.test(e.code))
    return new HttpError(400, "invalid_body_encoding", "request body does not match its Content-Encoding", {
      headers: { Connection: "close" },
    });
  // co-body rethrows JSON.parse's SyntaxError with status 400 attached.
  if (e?.type === "entity.parse.failed" || (err instanceof SyntaxError && e.status === 400))
    return new HttpError(400, "invalid_json", "request body is not valid JSON");
  if (
    e?.type === "encoding.unsupported" ||
    (e?.status === 415 && /content-encoding/i.test(String(e.message)))
  )
    return new HttpError(
      415,
      "unsupported_content_encoding",
      "send the body as identity, gzip, deflate or br",
    );
  if (e?.status === 415) return new HttpError(415, "unsupported_media_type", "send application/json");
  // A unique index lost a race with a concurrent request (e.g. one build in flight per workspace).
  const code = (err as { code?: string })?.code ?? (err as { cause?: { code?: string } })?.cause?.code;
  if (code === "23505")
    return new HttpError(409, "conflict", "a concurrent change got there first; reload and retry");
  return new HttpError(500, "internal", "internal error");
}
