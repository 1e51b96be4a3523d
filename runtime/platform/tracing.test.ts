import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { trace } from "@opentelemetry/api";
import { describe, expect, it } from "vitest";
import { createLogger } from "./logger.ts";
import { requestContext } from "./request-context.ts";
import {
  contextFromTraceparent,
  currentTraceIds,
  currentTraceparent,
  inSpan,
  startTracing,
  tracingEnabled,
} from "./tracing.ts";

const PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

describe("tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT)", () => {
  const tracing = startTracing({ tracesUrl: null });

  it("starts no SDK: nothing records", () => {
    expect(tracing.enabled).toBe(false);
    expect(tracingEnabled()).toBe(false);
    expect(trace.getTracer("x").startSpan("s").isRecording()).toBe(false);
  });

  it("still gives a request a trace id, not sampled, that what it starts inherits", async () => {
    await inSpan("request", {}, async (span) => {
      expect(span.isRecording()).toBe(false);
      const ids = currentTraceIds();
      expect(ids?.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(currentTraceparent()).toBe(`00-${ids!.traceId}-${ids!.spanId}-00`);
      await inSpan("child", {}, async () => {
        expect(currentTraceIds()?.traceId).toBe(ids!.traceId);
      });
    });
    expect(currentTraceIds()).toBeNull();
  });

  it("continues a caller's traceparent, and ignores a malformed one", async () => {
    await inSpan(
      "continued",
      {},
      async () => {
        expect(currentTraceIds()?.traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
        expect(currentTraceparent()).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
      },
      contextFromTraceparent(PARENT),
    );
    await inSpan(
      "fresh",
      {},
      async () => {
        expect(currentTraceIds()?.traceId).not.toBe("4bf92f3577b34da6a3ce929d0e0e4736");
      },
      contextFromTraceparent("00-zz-bad"),
    );
  });

  it("puts the request id and the trace and span ids on every log line", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const out = new Writable({
      write(chunk, _enc, done) {
        lines.push(JSON.parse(chunk.toString()));
        done();
      },
    });
    const log = createLogger("info", out);
    await requestContext.run({ requestId: "req-1" }, () =>
      inSpan("request", {}, async () => log.info("inside"), contextFromTraceparent(PARENT)),
    );
    log.info("outside");
    expect(lines[0]).toMatchObject({
      msg: "inside",
      requestId: "req-1",
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: expect.stringMatching(/^[0-9a-f]{16}$/),
    });
    expect(lines[1]).not.toHaveProperty("traceId");
    expect(lines[1]).not.toHaveProperty("requestId");
  });
});

describe("tracing on, over OTLP", () => {
  it("exports spans as OTLP http/json to the configured URL", async () => {
    const got: Array<{ path: string; type: string | undefined; bytes: number }> = [];
    const collector = createServer((req, res) => {
      let bytes = 0;
      req.on("data", (c: Buffer) => {
        bytes += c.length;
      });
      req.on("end", () => {
        got.push({ path: req.url ?? "", type: req.headers["content-type"], bytes });
        res.end();
      });
    });
    await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
    const port = (collector.address() as AddressInfo).port;
    const tracing = startTracing({ tracesUrl: `http://127.0.0.1:${port}/v1/traces` });
    try {
      expect(tracingEnabled()).toBe(true);
      await inSpan("exported", {}, async (span) => expect(span.isRecording()).toBe(true));
    } finally {
      await tracing.shutdown(); // flushes the batch
      collector.close();
    }
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ path: "/v1/traces", type: "application/json" });
    expect(got[0]!.bytes).toBeGreaterThan(0);
    expect(tracingEnabled()).toBe(false);
  });
});
