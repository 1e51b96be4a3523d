/**
 * The agent's logger: pino JSON to stdout and, once the outbox exists, to the log shipper. Secrets are
 * never passed to the logger; the redact list is the second line of defence.
 */
import { type Logger, pino } from "pino";

export type { Logger };

export function createAgentLogger(options: {
  level?: string;
  workspaceId?: string;
  extraStream?: NodeJS.WritableStream;
  stdout?: NodeJS.WritableStream;
}): Logger {
  const streams: pino.StreamEntry[] = [
    { stream: options.stdout ?? process.stdout, level: (options.level ?? "info") as pino.Level },
  ];
  if (options.extraStream) streams.push({ stream: options.extraStream, level: "info" });
  return pino(
    {
      level: options.level ?? "info",
      base: { service: "berth-agent", ...(options.workspaceId ? { workspaceId: options.workspaceId } : {}) },
      redact: {
        paths: [
          "token",
          "*.token",
          "authorization",
          "*.authorization",
          "password",
          "*.password",
          "credential",
          "*.credential",
          // The user's secrets travel in `environment` (heartbeat answers); never logged, and cut if ever passed.
          "environment",
          "*.environment",
        ],
        censor: "[redacted]",
      },
    },
    pino.multistream(streams),
  );
}
