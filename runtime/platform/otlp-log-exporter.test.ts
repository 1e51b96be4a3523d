import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import type { LogLine } from "./log-line.ts";
import { OtlpLogExporter } from "./otlp-log-exporter.ts";

describe("OtlpLogExporter", async () => {
  const received: Array<{ path: string; type: string | undefined; body: unknown }> = [];
  let status = 200;
  const server = createServer((req, res) => {
    let raw = "";
    req.on("data", (c) => {
      raw += c;
    });
    req.on("end", () => {
      received.push({ path: req.url ?? "", type: req.headers["content-type"], body: JSON.parse(raw) });
      res.statusCode = status;
      res.end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  afterAll(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/otlp/v1/logs`;

  const line: LogLine = {
    time: new Date("2026-12-05T12:00:00.123Z"),
    workspaceId: "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    instanceId: null,
    source: "agent",
    level: "warn",
    message: "disk almost full",
    fields: { percent: 91, mount: "/mnt/workspace", ok: false },
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  };

  it("posts OTLP JSON log records a backend can read", async () => {
    await new OtlpLogExporter({ url, serviceName: "berth-test" }).export([line]);
    expect(received).toHaveLength(1);
    const { path, type, body } = received[0]!;
    expect(path).toBe("/otlp/v1/logs");
    expect(type).toBe("application/json");
    const resourceLogs = (body as { resourceLogs: unknown[] }).resourceLogs;
    expect(resourceLogs[0]).toMatchObject({
      resource: { attributes: [{ key: "service.name", value: { stringValue: "berth-test" } }] },
      scopeLogs: [
        {
          logRecords: [
            {
              timeUnixNano: "1796472000123000000",
              severityNumber: 13,
              severityText: "WARN",
              body: { stringValue: "disk almost full" },
              traceId: line.traceId,
              attributes: expect.arrayContaining([
                { key: "berth.source", value: { stringValue: "agent" } },
                { key: "berth.workspace_id", value: { stringValue: line.workspaceId } },
                { key: "percent", value: { intValue: "91" } },
                { key: "ok", value: { boolValue: false } },
              ]),
            },
          ],
        },
      ],
    });
  });

  it("sends numbers no int64 can hold as doubles, and NaN or Infinity as text", async () => {
    const fields = {
      huge: 2 ** 70,
      nan: Number.NaN,
      inf: Number.POSITIVE_INFINITY,
      half: 0.5,
      max: 2 ** 53 - 1,
    };
    await new OtlpLogExporter({ url }).export([{ ...line, fields }]);
    const body = received.at(-1)!.body as {
      resourceLogs: Array<{ scopeLogs: Array<{ logRecords: Array<{ attributes: unknown[] }> }> }>;
    };
    expect(body.resourceLogs[0]!.scopeLogs[0]!.logRecords[0]!.attributes).toEqual(
      expect.arrayContaining([
        { key: "huge", value: { doubleValue: 2 ** 70 } },
        { key: "nan", value: { stringValue: "NaN" } },
        { key: "inf", value: { stringValue: "Infinity" } },
        { key: "half", value: { doubleValue: 0.5 } },
        { key: "max", value: { intValue: "9007199254740991" } },
      ]),
    );
  });

  it("rejects when the backend refuses, sends nothing for no lines", async () => {
    status = 503;
    await expect(new OtlpLogExporter({ url }).export([line])).rejects.toThrow(/HTTP 503/);
    const before = received.length;
    await new OtlpLogExporter({ url }).export([]);
    expect(received).toHaveLength(before);
  });
});
