/**
 * Ships stored log lines to any OTLP/HTTP logs endpoint (an OpenTelemetry Collector, Grafana Loki's
 * `/otlp/v1/logs`, a vendor) as OTLP JSON. Lines arrive already redacted and batched (the log sink, the
 * agent API's event batches). Its own requests are not traced: shipping a span per shipment would make
 * work for the thing being watched.
 */
import { context } from "@opentelemetry/api";
import { suppressTracing } from "@opentelemetry/core";
import type { LogExporter, LogLine } from "./log-line.ts";

/** OTLP severity numbers (logs data model). */
const SEVERITY: Record<LogLine["level"], number> = {
  trace: 1,
  debug: 5,
  info: 9,
  warn: 13,
  error: 17,
  fatal: 21,
};

type AnyValue =
  | { stringValue: string }
  | { intValue: string }
  | { doubleValue: number }
  | { boolValue: boolean };

function anyValue(v: unknown): AnyValue {
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  // int64 only for what is one: 2**70 would print as "1.1805916207174113e+21", and NaN or Infinity as a
  // JSON null, either of which makes a strict collector refuse the whole batch.
  if (typeof v === "number") {
    if (Number.isSafeInteger(v)) return { intValue: String(v) };
    return Number.isFinite(v) ? { doubleValue: v } : { stringValue: String(v) };
  }
  return { stringValue: JSON.stringify(v) ?? "null" };
}

export interface OtlpLogExporterOptions {
  /** The full logs URL, e.g. `http://collector:4318/v1/logs`. */
  url: string;
  serviceName?: string;
  timeoutMs?: number;
}

export class OtlpLogExporter implements LogExporter {
  readonly #o: Required<OtlpLogExporterOptions>;

  constructor(options: OtlpLogExporterOptions) {
    this.#o = { serviceName: "berth-control-plane", timeoutMs: 10_000, ...options };
  }

  async export(lines: LogLine[]): Promise<void> {
    if (lines.length === 0) return;
    const body = JSON.stringify(this.body(lines));
    const res = await context.with(suppressTracing(context.active()), () =>
      fetch(this.#o.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      }),
    );
    await res.arrayBuffer().catch(() => {});
    if (!res.ok) throw new Error(`OTLP logs endpoint answered HTTP ${res.status}`);
  }

  /** The OTLP `ExportLogsServiceRequest`, JSON-encoded form. */
  body(lines: LogLine[]) {
    return {
      resourceLogs: [
        {
          resource: { attributes: [{ key: "service.name", value: { stringValue: this.#o.serviceName } }] },
          scopeLogs: [
            {
              scope: { name: "berth.log-store" },
              logRecords: lines.map((line) => ({
                timeUnixNano: `${BigInt(line.time.getTime()) * 1_000_000n}`,
                severityNumber: SEVERITY[line.level],
                severityText: line.level.toUpperCase(),
                body: { stringValue: line.message },
                ...(line.traceId ? { traceId: line.traceId } : {}),
                attributes: [
                  { key: "berth.source", value: { stringValue: line.source } },
                  ...(line.workspaceId
                    ? [{ key: "berth.workspace_id", value: { stringValue: line.workspaceId } }]
                    : []),
                  ...(line.instanceId
                    ? [{ key: "berth.instance_id", value: { stringValue: line.instanceId } }]
                    : []),
                  ...Object.entries(line.fields).map(([key, v]) => ({ key, value: anyValue(v) })),
                ],
              })),
            },
          ],
        },
      ],
    };
  }
}
