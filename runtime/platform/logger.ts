import { type Logger, pino } from "pino";
import { currentRequestId } from "./request-context.ts";
import { currentTraceIds } from "./tracing.ts";

export type { Logger };

/**
 * JSON logs on stdout, each line with its request id and trace id when it has them. Credentials are
 * redacted by path as a second line of defence; the first is never logging them at all. `store`, when
 * given, also receives every line at `storeLevel` and above (the central log store's sink, log-sink.ts,
 * which keeps the lines it wants).
 */
export function createLogger(
  level: string,
  destination?: pino.DestinationStream,
  store?: { stream: pino.DestinationStream; level?: pino.Level },
): Logger {
  const out = destination ?? pino.destination(1);
  const storeLevel = store?.level ?? "info";
  // The logger's own level is the lower of the two, so the store gets its lines even when stdout is quieter.
  const lowest = store && pino.levels.values[storeLevel]! < (pino.levels.values[level] ?? Infinity);
  return pino(
    {
      level: lowest ? storeLevel : level,
      base: { service: "berth" },
      mixin() {
        const requestId = currentRequestId();
        const trace = currentTraceIds();
        return {
          ...(requestId ? { requestId } : {}),
          ...(trace ? { traceId: trace.traceId, spanId: trace.spanId } : {}),
        };
      },
      redact: {
        paths: [
          "req.headers.authorization",
          "req.headers.cookie",
          'req.headers["sec-websocket-protocol"]',
          'res.headers["set-cookie"]',
          "*.token",
          "*.password",
          "*.secret",
          "*.environment",
        ],
        censor: "[redacted]",
      },
      serializers: { err: serializeError },
    },
    store
      ? pino.multistream([
          ...(level === "silent" ? [] : [{ level: level as pino.Level, stream: out }]),
          { level: storeLevel, stream: store.stream },
        ])
      : out,
  );
}

/**
 * pino's error serializer, without the values of a failed query. drizzle's query errors carry the
 * statement's values in their message and stack (`params: …`) and as a `params` field, and a value may be a
 * credential or a user's data; the log keeps the statement and the cause, and how many values there were.
 */
function serializeError(err: Error): ReturnType<typeof pino.stdSerializers.err> {
  const out = pino.stdSerializers.err(err);
  // Lines also log `err: String(err)` or `err.message`: text passes as it is.
  if (!(err instanceof Error) || typeof out !== "object" || out === null) return out;
  let text = { message: out.message, stack: out.stack };
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const params = (e as { params?: unknown }).params;
    if (!Array.isArray(params) || typeof (e as { query?: unknown }).query !== "string") continue;
    // drizzle writes them as `${params}`, so that exact text is what to take out.
    const shown = `\nparams: ${String(params)}`;
    const hidden = `\nparams: [${params.length} not logged]`;
    text = { message: text.message.replace(shown, hidden), stack: text.stack.replace(shown, hidden) };
  }
  const { params: _values, ...rest } = out as typeof out & { params?: unknown };
  return { ...rest, ...text };
}
