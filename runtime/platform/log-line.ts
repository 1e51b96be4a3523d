/** One line of the central log store, as the sinks and exporters above the store hand it around. */
export interface LogLine {
  time: Date;
  /** null for the control plane's own lines that concern no workspace. */
  workspaceId: string | null;
  instanceId: string | null;
  source: "agent" | "control-plane";
  level: "trace" | "debug" | "info" | "warn" | "error" | "fatal";
  message: string;
  fields: Record<string, unknown>;
  traceId: string | null;
}

/** pino's numeric levels by name. */
export const PINO_LEVELS: Record<number, LogLine["level"]> = {
  10: "trace",
  20: "debug",
  30: "info",
  40: "warn",
  50: "error",
  60: "fatal",
};

/** Where stored lines are also shipped (Loki, any OTLP log backend). */
export interface LogExporter {
  /** Best effort: resolves when the backend took them, rejects when it did not; never retried. */
  export(lines: LogLine[]): Promise<void>;
}
