import type { LogLevel } from "../../box/protocol.ts";

/** One line of the central log store, as the sinks and exporters above the store hand it around. */
export interface LogLine {
  time: Date;
  /** null for the control plane's own lines that concern no workspace. */
  workspaceId: string | null;
  instanceId: string | null;
  source: "agent" | "control-plane";
  level: LogLevel;
  message: string;
  fields: Record<string, unknown>;
  traceId: string | null;
}

/** Where stored lines are also shipped (Loki, any OTLP log backend). */
export interface LogExporter {
  /** Best effort: resolves when the backend took them, rejects when it did not; never retried. */
  export(lines: LogLine[]): Promise<void>;
}
