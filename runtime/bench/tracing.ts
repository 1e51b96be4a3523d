/**
 * What tracing costs a request: `GET /api/v1/workspaces` (authentication, a store query) with tracing off
 * (no SDK, the default) against tracing on with spans batched to an exporter that drops them, so the
 * figure is the SDK's and the instrumentation's cost, not a collector's. Short: off and on alternate, two
 * 3-second runs each, the better of each pair kept (the machine is shared: load comes and goes).
 */
import { ExportResultCode } from "@opentelemetry/core";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import autocannon from "autocannon";
import { startTracing } from "../platform/tracing.ts";
import { ScriptedDriver } from "../test/scripted-driver.ts";
import { type BenchPostgres, benchControlPlane, fmt, table } from "./harness.ts";

const SECONDS = 3;
const TOKEN = "bench-token-bench-token-bench-token-bench";

let exported = 0;
const dropAll: SpanExporter = {
  export: (spans, done) => {
    exported += spans.length;
    done({ code: ExportResultCode.SUCCESS });
  },
  shutdown: async () => {},
};

export async function benchTracing(pgs: BenchPostgres): Promise<void> {
  const cp = await benchControlPlane(
    await pgs.database("tracing"),
    new ScriptedDriver(),
    {},
    { runBuilds: false },
  );
  const url = `${cp.url}/api/v1/workspaces`;
  const run = async () =>
    (
      await autocannon({
        url,
        headers: { authorization: `Bearer ${TOKEN}` },
        duration: SECONDS,
        connections: 10,
        workers: 1,
      })
    ).requests.average;
  try {
    await autocannon({ url, headers: { authorization: `Bearer ${TOKEN}` }, duration: 1, connections: 10 }); // warm-up
    let off = 0;
    let on = 0;
    let onRequests = 0;
    for (let round = 0; round < 2; round++) {
      off = Math.max(off, await run());
      const tracing = startTracing({ exporter: dropAll, batch: true });
      const rate = await run();
      await tracing.shutdown();
      on = Math.max(on, rate);
      onRequests += rate * SECONDS;
    }
    table(
      `Tracing overhead: GET /api/v1/workspaces, best of 2 alternating ${SECONDS}-s runs, 10 connections`,
      ["tracing", "requests/s", "spans/request", "vs baseline"],
      [
        ["off, no SDK (baseline)", fmt(off), "0", "1.00x"],
        ["on, batched to a no-op exporter", fmt(on), fmt(exported / onRequests), `${fmt(on / off, 2)}x`],
      ],
    );
  } finally {
    await cp.close();
  }
}
