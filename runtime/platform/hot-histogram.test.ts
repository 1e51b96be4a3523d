import { Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { HotHistogram } from "./hot-histogram.ts";

const CONFIG = {
  name: "http_request_duration_seconds",
  help: "HTTP request duration by method, matched route and status",
  labelNames: ["method", "route", "status"] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
};

/** A small seeded PRNG (mulberry32), so a failure names a reproducible case. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pair() {
  const theirs = new Registry();
  const ours = new Registry();
  return {
    theirs,
    ours,
    reference: new Histogram({ ...CONFIG, registers: [theirs] }),
    hot: new HotHistogram({ ...CONFIG, registers: [ours] }),
  };
}

describe("HotHistogram", () => {
  it("renders exactly what prom-client's Histogram renders for the same observations", async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const random = prng(seed);
      const { theirs, ours, reference, hot } = pair();
      const methods = ["GET", "HEAD", "POST"];
      const routes = ["preview:host", "/api/v1/workspaces/:id", 'odd "route"\\ with\nnewline'];
      const statuses = ["200", "304", "404", "502"];
      // Bounds themselves (le is inclusive), values past the last bound, zero and tiny values.
      const special = [0, 0.005, 0.01, 5, 5.000001, 60, 1e-9];
      for (let i = 0; i < 2000; i++) {
        const labels = {
          method: methods[Math.floor(random() * methods.length)]!,
          route: routes[Math.floor(random() * routes.length)]!,
          status: statuses[Math.floor(random() * statuses.length)]!,
        };
        const value = random() < 0.1 ? special[Math.floor(random() * special.length)]! : random() ** 4 * 8;
        reference.observe(labels, value);
        hot.observe(labels, value);
      }
      expect(await ours.metrics(), `seed ${seed}`).toBe(await theirs.metrics());
      // The JSON form too, but for prom-client's exemplar fields (always empty: exemplars are not enabled).
      const json = await theirs.getMetricsAsJSON();
      for (const metric of json) for (const v of metric.values) delete (v as { exemplar?: unknown }).exemplar;
      expect(await ours.getMetricsAsJSON()).toEqual(json);
    }
  });

  it("times with startTimer, empties on reset, and refuses a value that is not a number", async () => {
    const { ours, hot } = pair();
    const end = hot.startTimer();
    const seconds = end({ method: "GET", route: "/healthz", status: "200" });
    expect(seconds).toBeGreaterThanOrEqual(0);
    expect(await ours.metrics()).toContain(
      'http_request_duration_seconds_count{method="GET",route="/healthz",status="200"} 1',
    );
    ours.resetMetrics();
    expect(await ours.metrics()).not.toContain("_count");
    expect(() => hot.observe({ method: "GET", route: "/", status: "200" }, Number.NaN)).toThrow(
      /not a number/,
    );
    expect(await ours.metrics()).not.toContain("_count");
  });

  it("keeps label sets apart whatever their values contain", async () => {
    const { ours, hot } = pair();
    // Joined naively these two would be one key.
    hot.observe({ method: "a", route: "b\u0000c", status: "d" }, 1);
    hot.observe({ method: "a\u0000b", route: "c", status: "d" }, 1);
    const text = await ours.metrics();
    expect(text.match(/_count\{/g)).toHaveLength(2);
  });
});
