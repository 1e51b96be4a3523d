/**
 * The fleet-wide figures /metrics shows, computed from the database when Prometheus scrapes (as the
 * `metrics` system actor), so every replica answers the same and nothing is lost between scrapes: box
 * telemetry aggregates (and, opted in, per-workspace gauges), the age of the oldest last good backup, and
 * the meter outbox backlog (were it set by the replica that drains the outbox, the others would report
 * their stale or zero value and the alert would need to guess which replica is right).
 */
import { DISK_RATIO_BOUNDS, type Metrics } from "../../platform/metrics.ts";
import { SYSTEM } from "../../store/actors.ts";
import type { Store } from "../../store/store.ts";
import type { FleetSample } from "../../store/telemetry.ts";

/** A box counts as reporting when its latest sample is at most this old. */
export const REPORTING_WINDOW_MS = 5 * 60_000;

export async function refreshFleetMetrics(
  store: Store,
  metrics: Metrics,
  options: { diskWarnPercent: number; perWorkspace: boolean; now?: Date },
): Promise<void> {
  const now = options.now ?? new Date();
  const scope = store.as(SYSTEM.metrics);
  const since = new Date(now.getTime() - REPORTING_WINDOW_MS);
  const fleet = await scope.telemetry.fleetSummary(since, options.diskWarnPercent / 100, DISK_RATIO_BOUNDS);
  metrics.boxesReporting.set(fleet.reporting);
  metrics.boxDiskOverThreshold.set(fleet.overThreshold);
  metrics.boxDiskUsedMax.set(fleet.diskMax);
  for (const { le, boxes } of fleet.diskAtMost) metrics.boxDiskUsedBoxes.set({ le: String(le) }, boxes);
  metrics.boxDiskUsedBoxes.set({ le: "+Inf" }, fleet.diskKnown);
  metrics.boxMemoryUsedMax.set(fleet.memoryMax);
  metrics.boxLoadMax.set(fleet.loadMax);

  // Per-workspace series are rebuilt from scratch so a box that stopped reporting disappears. The query
  // comes first: with an await between the reset and the sets, a concurrent scrape (an HA pair of
  // Prometheus servers) would be answered with none of the boxes.
  const boxes = options.perWorkspace ? await scope.telemetry.fleet(since) : [];
  metrics.boxDiskUsedByWorkspace.reset();
  metrics.boxMemoryUsedByWorkspace.reset();
  metrics.boxLoadByWorkspace.reset();
  for (const b of boxes) {
    const disk = diskRatio(b);
    const memory = memoryRatio(b);
    if (disk !== null) metrics.boxDiskUsedByWorkspace.set({ workspace_id: b.workspaceId }, disk);
    if (memory !== null) metrics.boxMemoryUsedByWorkspace.set({ workspace_id: b.workspaceId }, memory);
    if (b.loadAvg1 !== null) metrics.boxLoadByWorkspace.set({ workspace_id: b.workspaceId }, b.loadAvg1);
  }

  metrics.backupOldestSuccessAge.set(await scope.backups.oldestLastSuccessAgeSeconds(now));
  metrics.billingUnsent.set(await scope.billing.unsentCount());
}

function diskRatio(b: FleetSample): number | null {
  if (b.diskTotalBytes === null || b.diskFreeBytes === null || b.diskTotalBytes <= 0) return null;
  return Math.min(1, Math.max(0, (b.diskTotalBytes - b.diskFreeBytes) / b.diskTotalBytes));
}

function memoryRatio(b: FleetSample): number | null {
  if (b.memTotalBytes === null || b.memAvailableBytes === null || b.memTotalBytes <= 0) return null;
  return Math.min(1, Math.max(0, (b.memTotalBytes - b.memAvailableBytes) / b.memTotalBytes));
}
