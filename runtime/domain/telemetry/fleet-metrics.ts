/**
 * The fleet-wide figures /metrics shows, computed from the database when Prometheus scrapes (as the
 * `metrics` system actor), so every replica answers the same and nothing is lost between scrapes: box
 * telemetry aggregates (and, opted in, per-workspace gauges) and the age of the oldest last good backup.
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
  const fleet = await scope.telemetry.fleet(new Date(now.getTime() - REPORTING_WINDOW_MS));
  const disk = fleet.map((b) => ({ id: b.workspaceId, ratio: diskRatio(b) }));
  const diskRatios = disk.flatMap((d) => (d.ratio === null ? [] : [d.ratio]));
  const memory = fleet.map((b) => ({ id: b.workspaceId, ratio: memoryRatio(b) }));

  metrics.boxesReporting.set(fleet.length);
  metrics.boxDiskOverThreshold.set(diskRatios.filter((r) => r * 100 >= options.diskWarnPercent).length);
  metrics.boxDiskUsedMax.set(max(diskRatios));
  for (const le of DISK_RATIO_BOUNDS)
    metrics.boxDiskUsedBoxes.set({ le: String(le) }, diskRatios.filter((r) => r <= le).length);
  metrics.boxDiskUsedBoxes.set({ le: "+Inf" }, diskRatios.length);
  metrics.boxMemoryUsedMax.set(max(memory.flatMap((m) => (m.ratio === null ? [] : [m.ratio]))));
  metrics.boxLoadMax.set(max(fleet.flatMap((b) => (b.loadAvg1 === null ? [] : [b.loadAvg1]))));

  // Per-workspace series are rebuilt from scratch so a box that stopped reporting disappears.
  metrics.boxDiskUsedByWorkspace.reset();
  metrics.boxMemoryUsedByWorkspace.reset();
  metrics.boxLoadByWorkspace.reset();
  if (options.perWorkspace) {
    for (const d of disk)
      if (d.ratio !== null) metrics.boxDiskUsedByWorkspace.set({ workspace_id: d.id }, d.ratio);
    for (const m of memory)
      if (m.ratio !== null) metrics.boxMemoryUsedByWorkspace.set({ workspace_id: m.id }, m.ratio);
    for (const b of fleet)
      if (b.loadAvg1 !== null) metrics.boxLoadByWorkspace.set({ workspace_id: b.workspaceId }, b.loadAvg1);
  }

  metrics.backupOldestSuccessAge.set(await scope.backups.oldestLastSuccessAgeSeconds(now));
}

function diskRatio(b: FleetSample): number | null {
  if (b.diskTotalBytes === null || b.diskFreeBytes === null || b.diskTotalBytes <= 0) return null;
  return Math.min(1, Math.max(0, (b.diskTotalBytes - b.diskFreeBytes) / b.diskTotalBytes));
}

function memoryRatio(b: FleetSample): number | null {
  if (b.memTotalBytes === null || b.memAvailableBytes === null || b.memTotalBytes <= 0) return null;
  return Math.min(1, Math.max(0, (b.memTotalBytes - b.memAvailableBytes) / b.memTotalBytes));
}

const max = (xs: number[]) => xs.reduce((a, b) => Math.max(a, b), 0);
