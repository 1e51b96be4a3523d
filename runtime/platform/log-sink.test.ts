import { describe, expect, it } from "vitest";
import type { LogLine } from "./log-line.ts";
import { LogStoreSink, toLogLine } from "./log-sink.ts";
import { createLogger } from "./logger.ts";

const WS = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";

describe("toLogLine", () => {
  it("keeps warnings and above, and any line about a workspace", () => {
    const at = (level: number, extra = {}) => JSON.stringify({ level, time: 1, msg: "m", ...extra });
    expect(toLogLine(at(30))).toBeNull();
    expect(toLogLine(at(40))).toMatchObject({ level: "warn", workspaceId: null, source: "control-plane" });
    expect(toLogLine(at(30, { workspaceId: WS, requestId: "r1", traceId: "t1", buildId: "b" }))).toEqual({
      time: new Date(1),
      workspaceId: WS,
      instanceId: null,
      source: "control-plane",
      level: "info",
      message: "m",
      fields: { requestId: "r1", buildId: "b" },
      traceId: "t1",
    });
    // Agent lines printed for debugging are stored by the agent API already; a non-UUID is no workspace.
    expect(toLogLine(at(50, { source: "agent", workspaceId: WS }))).toBeNull();
    expect(toLogLine(at(30, { workspaceId: "not-a-uuid" }))).toBeNull();
    expect(toLogLine("not json")).toBeNull();
  });
});

describe("LogStoreSink", () => {
  it("holds lines until a writer is attached, then writes them in batches", async () => {
    const batches: LogLine[][] = [];
    const sink = new LogStoreSink({ batchSize: 2, flushMs: 10_000 });
    const log = createLogger("silent", undefined, { stream: sink });
    log.warn("one");
    log.warn("two");
    log.info("not kept");
    log.error({ workspaceId: WS }, "three");
    expect(batches).toEqual([]);
    sink.attach(async (lines) => {
      batches.push(lines);
    });
    await sink.flush();
    expect(batches.flat().map((l) => l.message)).toEqual(["one", "two", "three"]);
    await sink.close();
  });

  it("drops and counts lines past its bound, and when the writer fails", async () => {
    const sink = new LogStoreSink({ maxBuffered: 2 });
    const log = createLogger("silent", undefined, { stream: sink });
    for (let i = 0; i < 5; i++) log.warn(`line ${i}`);
    expect(sink.dropped).toBe(3);
    sink.attach(async () => {
      throw new Error("database down");
    });
    await sink.flush();
    expect(sink.dropped).toBe(5);
  });
});
