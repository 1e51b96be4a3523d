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
    },
    store
      ? pino.multistream([
          ...(level === "silent" ? [] : [{ level: level as pino.Level, stream: out }]),
          { level: storeLevel, stream: store.stream },
        ])
      : out,
  );
}
