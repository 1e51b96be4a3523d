/**
 * OpenTelemetry tracing for the control plane, with manual spans at our own boundaries (the Koa app, the
 * pg client, outgoing fetch, builds): auto-instrumentation needs require hooks that the ESM runtime does
 * not give it.
 *
 * Two modes:
 * - on (`OTEL_EXPORTER_OTLP_ENDPOINT`, or a test's exporter): a tracer provider exports spans over OTLP
 *   (http/json, which every collector and Grafana Tempo accept) in batches;
 * - off: no SDK at all. The API's no-op tracer answers, and a request still gets a trace id (the caller's
 *   `traceparent`, or fresh random ids marked not sampled), so log lines, builds and the box agent still
 *   share one id to search by. pg and fetch spans are skipped outright.
 *
 * The async context manager is always on: it is what carries the active span (and so the trace id on log
 * lines) across awaits.
 */
import { randomBytes } from "node:crypto";
import {
  type Context,
  context,
  ROOT_CONTEXT,
  type Span,
  type SpanOptions,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  TraceFlags,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  SimpleSpanProcessor,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import { startFetchSpans } from "./fetch-tracing.ts";

export interface TracingOptions {
  /** OTLP traces URL (`…/v1/traces`); null or absent: tracing off unless `exporter` is given. */
  tracesUrl?: string | null;
  serviceName?: string;
  /** Tests and benchmarks: export here instead of OTLP, one span at a time unless `batch`. */
  exporter?: SpanExporter;
  /** With `exporter`: batch like production (the benchmark measures that path). */
  batch?: boolean;
}

export interface Tracing {
  readonly enabled: boolean;
  /** Exports what is buffered and stops; tracing is off afterwards. */
  shutdown(): Promise<void>;
}

const propagator = new W3CTraceContextPropagator();
const headerGetter: TextMapGetter<Record<string, string | undefined>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};
const headerSetter: TextMapSetter<Record<string, string>> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

let contextManagerReady = false;
let enabled = false;

/** The async context manager, once per process: the active span follows awaits from here on. */
export function ensureTraceContext(): void {
  if (contextManagerReady) return;
  contextManagerReady = context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
}

/** Whether spans are recorded and exported; pg and fetch spans are skipped when not. */
export function tracingEnabled(): boolean {
  return enabled;
}

/**
 * Starts tracing: always the context manager; a provider and exporter only when there is somewhere to
 * export to. A second call replaces the first's provider (tests and the benchmark switch modes).
 */
export function startTracing(options: TracingOptions = {}): Tracing {
  ensureTraceContext();
  const processor = options.exporter
    ? options.batch
      ? new BatchSpanProcessor(options.exporter)
      : new SimpleSpanProcessor(options.exporter)
    : options.tracesUrl
      ? new BatchSpanProcessor(new OTLPTraceExporter({ url: options.tracesUrl }))
      : null;
  if (!processor) return { enabled: false, shutdown: async () => {} };
  trace.disable();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": options.serviceName ?? "berth-control-plane" }),
    spanProcessors: [processor],
  });
  trace.setGlobalTracerProvider(provider);
  const stopFetch = startFetchSpans();
  enabled = true;
  return {
    enabled: true,
    async shutdown() {
      enabled = false;
      stopFetch();
      await provider.shutdown().catch(() => {});
      trace.disable();
    },
  };
}

export function tracer() {
  return trace.getTracer("berth");
}

/** The context a W3C `traceparent` (and `tracestate`) continues; ROOT when absent or malformed. */
export function contextFromTraceparent(traceparent: string | null | undefined, tracestate?: string): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return propagator.extract(ROOT_CONTEXT, { traceparent, tracestate }, headerGetter);
}

/** The `traceparent` of the active span (or of `ctx`), to hand to a build, a box or another service. */
export function currentTraceparent(ctx: Context = context.active()): string | null {
  const carrier: Record<string, string> = {};
  propagator.inject(ctx, carrier, headerSetter);
  return carrier.traceparent ?? null;
}

/** Trace and span id of the active span, for log lines; null outside any trace. */
export function currentTraceIds(): { traceId: string; spanId: string } | null {
  const span = trace.getActiveSpan();
  if (!span) return null;
  const { traceId, spanId } = span.spanContext();
  return trace.isSpanContextValid(span.spanContext()) ? { traceId, spanId } : null;
}

/**
 * Starts a span under `parent`. With tracing off and no parent, the no-op span carries no ids: it gets
 * fresh random ones (not sampled), so everything under it still shares a trace id.
 */
export function startSpan(name: string, options: SpanOptions, parent: Context = context.active()): Span {
  const span = tracer().startSpan(name, options, parent);
  if (trace.isSpanContextValid(span.spanContext())) return span;
  return trace.wrapSpanContext({
    traceId: randomBytes(16).toString("hex"),
    spanId: randomBytes(8).toString("hex"),
    traceFlags: TraceFlags.NONE,
  });
}

/**
 * Runs `fn` inside a new span (active for everything it awaits), ends it, and records an exception as
 * the span's error status.
 */
export async function inSpan<T>(
  name: string,
  options: SpanOptions,
  fn: (span: Span) => Promise<T>,
  parent: Context = context.active(),
): Promise<T> {
  const span = startSpan(name, options, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
    throw err;
  } finally {
    span.end();
  }
}
