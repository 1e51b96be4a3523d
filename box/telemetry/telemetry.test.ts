import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describe, expect, it, vi } from "vitest";
import type { LogPayload } from "../protocol.ts";
import { LogShipper } from "./log-shipper.ts";
import { createAgentLogger } from "./logger.ts";
import { systemMetrics } from "./metrics.ts";
import { formatTraceparent, newSpan, parseTraceparent } from "./trace.ts";

const sink = () =>
  new Writable({
    write(_c, _e, d) {
      d();
    },
  });

describe("LogShipper", () => {
  it("turns pino lines into log events with fields, skipping debug and secrets", async () => {
    const got: LogPayload[] = [];
    const shipper = new LogShipper({ publish: (l) => got.push(l) });
    const log = createAgentLogger({
      level: "debug",
      extraStream: shipper,
      stdout: sink(),
      workspaceId: "ws-1",
    });
    log.debug("not shipped");
    log.info({ session: "s1", nested: { a: 1 }, token: "abc-secret" }, "session ensured");
    log.error({ err: "boom" }, "failed");
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual([
      {
        level: "info",
        msg: "session ensured",
        fields: {
          service: "berth-agent",
          workspaceId: "ws-1",
          session: "s1",
          nested: '{"a":1}',
          token: "[redacted]",
        },
      },
      { level: "error", msg: "failed", fields: { service: "berth-agent", workspaceId: "ws-1", err: "boom" } },
    ]);
  });

  it("rate-limits and then reports how many lines it held back", () => {
    vi.useFakeTimers();
    try {
      const got: LogPayload[] = [];
      const shipper = new LogShipper({ publish: (l) => got.push(l), burst: 2, perMinute: 60 });
      const line = (i: number) => `${JSON.stringify({ level: 30, time: Date.now(), msg: `m${i}` })}\n`;
      for (let i = 0; i < 5; i++) shipper.write(line(i));
      expect(got.map((g) => g.msg)).toEqual(["m0", "m1"]);
      expect(shipper.suppressedCount).toBe(3);
      vi.advanceTimersByTime(10_000); // the bucket refills at one line per second
      shipper.write(line(9));
      expect(got.slice(2).map((g) => g.msg)).toEqual([
        "3 agent log lines were not shipped (rate limit)",
        "m9",
      ]);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("trace and metrics", () => {
  it("makes child spans in the same trace and rejects malformed traceparents", () => {
    const root = newSpan();
    const child = newSpan(parseTraceparent(formatTraceparent(root)));
    expect(child.traceId).toBe(root.traceId);
    expect(child.spanId).not.toBe(root.spanId);
    expect(parseTraceparent("00-00000000000000000000000000000000-0000000000000001-01")).toBeNull();
    expect(parseTraceparent("garbage")).toBeNull();
  });

  it("reads disk and memory", () => {
    const m = systemMetrics(mkdtempSync(join(tmpdir(), "berth-m-")));
    expect(m.diskTotalBytes).toBeGreaterThan(0);
    expect(m.memTotalBytes).toBeGreaterThan(0);
    expect(systemMetrics("/no/such/dir").diskTotalBytes).toBeUndefined();
  });
});
