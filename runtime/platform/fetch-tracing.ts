/**
 * Client spans for outgoing `fetch` (Node's built-in undici), from undici's diagnostics channels: every
 * call site is covered without wrapping it, and the request carries the span's `traceparent` onward.
 * Only subscribed while tracing is on (tracing.ts).
 */
import diagnostics from "node:diagnostics_channel";
import { context, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { isTracingSuppressed } from "@opentelemetry/core";

interface UndiciRequest {
  origin: string;
  method: string;
  path: string;
  addHeader(name: string, value: string): unknown;
}

const spans = new WeakMap<UndiciRequest, Span>();

/** Subscribes; returns the unsubscribe. */
export function startFetchSpans(): () => void {
  const onCreate = (message: unknown) => {
    const { request } = message as { request: UndiciRequest };
    const active = context.active();
    if (isTracingSuppressed(active)) return;
    const url = `${request.origin}${request.path.split("?")[0]}`;
    const span = trace.getTracer("berth").startSpan(
      `${request.method}`,
      {
        kind: SpanKind.CLIENT,
        attributes: { "http.request.method": request.method, "url.full": url },
      },
      active,
    );
    spans.set(request, span);
    const { traceId, spanId, traceFlags } = span.spanContext();
    request.addHeader("traceparent", `00-${traceId}-${spanId}-0${traceFlags & 1}`);
  };
  const onHeaders = (message: unknown) => {
    const { request, response } = message as { request: UndiciRequest; response: { statusCode: number } };
    const span = spans.get(request);
    if (!span) return;
    span.setAttribute("http.response.status_code", response.statusCode);
    if (response.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  };
  const onEnd = (message: unknown) => {
    const { request, error } = message as { request: UndiciRequest; error?: Error };
    const span = spans.get(request);
    if (!span) return;
    spans.delete(request);
    if (error) {
      span.recordException(error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    }
    span.end();
  };
  const channels: Array<[string, (m: unknown) => void]> = [
    ["undici:request:create", onCreate],
    ["undici:request:headers", onHeaders],
    ["undici:request:trailers", onEnd],
    ["undici:request:error", onEnd],
  ];
  for (const [name, fn] of channels) diagnostics.subscribe(name, fn);
  return () => {
    for (const [name, fn] of channels) diagnostics.unsubscribe(name, fn);
  };
}
