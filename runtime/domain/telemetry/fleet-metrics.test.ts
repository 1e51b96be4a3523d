import { describe, expect, it } from "vitest";
import { createMetrics } from "../../platform/metrics.ts";
import type { Store } from "../../store/store.ts";
import type { FleetSample, FleetSummary } from "../../store/telemetry.ts";
import { refreshFleetMetrics } from "./fleet-metrics.ts";

const WS = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";

/** A store answering the fleet queries; `fleet` waits for `gate` when one is set, and says it is waiting. */
function fakeStore(samples: FleetSample[]) {
  let gate: Promise<void> | null = null;
  let waiting: () => void = () => {};
  const summary: FleetSummary = {
    reporting: samples.length,
    diskKnown: samples.length,
    overThreshold: 0,
    diskMax: 0.5,
    memoryMax: 0.25,
    loadMax: 1,
    diskAtMost: [],
  };
  const scope = {
    telemetry: {
      fleetSummary: async () => summary,
      fleet: async () => {
        waiting();
        await gate;
        return samples;
      },
    },
    backups: { oldestLastSuccessAgeSeconds: async () => 0 },
    billing: { unsentCount: async () => 0 },
  };
  return {
    store: { as: () => scope } as unknown as Store,
    /** Holds the next `fleet` query; answers once it waits, and how to let it go. */
    hold(): { reached: Promise<void>; release: () => void } {
      let release!: () => void;
      gate = new Promise((r) => {
        release = r;
      });
      const reached = new Promise<void>((r) => {
        waiting = r;
      });
      return { reached, release };
    },
  };
}

describe("refreshFleetMetrics", () => {
  it("never shows a scrape the per-workspace series half rebuilt", async () => {
    const metrics = createMetrics();
    const sample: FleetSample = {
      workspaceId: WS,
      sampledAt: new Date(),
      loadAvg1: 1,
      memTotalBytes: 4,
      memAvailableBytes: 3,
      diskTotalBytes: 10,
      diskFreeBytes: 5,
    };
    const fake = fakeStore([sample]);
    const options = { diskWarnPercent: 90, perWorkspace: true };
    await refreshFleetMetrics(fake.store, metrics, options);
    const series = `box_disk_used_ratio_by_workspace{workspace_id="${WS}"} 0.5`;
    expect(await metrics.registry.metrics()).toContain(series);
    // Two Prometheus servers (an HA pair) scrape at once: while one scrape's refresh waits for the
    // database, the other one's answer must still hold every box.
    const { reached, release } = fake.hold();
    const refreshing = refreshFleetMetrics(fake.store, metrics, options);
    await reached;
    expect(await metrics.registry.metrics()).toContain(series);
    release();
    await refreshing;
    expect(await metrics.registry.metrics()).toContain(series);
  });
});
