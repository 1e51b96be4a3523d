import { type Logger, pino } from "pino";
import { currentRequestId } from "./request-context.ts";

export type { Logger };

/**
 * JSON logs on stdout. Credentials are redacted by path as a second line of defence; the first is never
 * logging them at all.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "berth" },
      mixin() {
        const requestId = currentRequestId();
        return requestId ? { requestId } : {};
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
    destination,
  );
}
