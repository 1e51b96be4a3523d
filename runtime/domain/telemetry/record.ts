/**
 * A heartbeat's load, memory and disk figures (box/protocol.ts `metrics`), stored as the box's telemetry,
 * and the disk-nearly-full notification: when the volume's usage crosses the threshold the owner is told
 * once (inbox and Web Push), not once per heartbeat; the alert re-arms when usage falls below the threshold
 * minus a hysteresis, so a disk hovering at the line does not notify on every wobble. The alert's state
 * lives in the database (store/telemetry.ts), so a restart neither repeats nor loses it.
 */
import prettyBytes from "pretty-bytes";
import type { MetricsSnapshot } from "../../../box/protocol.ts";
import { pgWhole } from "../../platform/pg-values.ts";
import type { AuthorizedStore } from "../../store/store.ts";

/** Percentage points below the threshold that usage must fall to re-arm the alert. */
export const DISK_WARN_HYSTERESIS = 5;

/** Percent of the volume in use, or null when the agent did not report its disk. */
export function diskUsedPercent(m: Pick<MetricsSnapshot, "diskTotalBytes" | "diskFreeBytes">): number | null {
  if (m.diskTotalBytes === undefined || m.diskFreeBytes === undefined || m.diskTotalBytes <= 0) return null;
  return (100 * Math.max(0, m.diskTotalBytes - m.diskFreeBytes)) / m.diskTotalBytes;
}

/**
 * The protocol allows any non-negative finite figure, but the byte columns are bigint (pgWhole) and the load
 * a float4: a figure that does not fit would fail the whole heartbeat (and with it the box's desired state).
 */
function load(v: number | undefined): number | null {
  return v === undefined || !Number.isFinite(Math.fround(v)) ? null : v;
}

/** `agent` is the store as the reporting agent: it writes its own instance's sample only. */
export async function recordTelemetry(
  agent: AuthorizedStore,
  m: MetricsSnapshot,
  options: { diskWarnPercent: number; now?: Date },
): Promise<void> {
  const sampledAt = options.now ?? new Date();
  const figures = {
    loadAvg1: load(m.loadAvg1),
    memTotalBytes: pgWhole(m.memTotalBytes),
    memAvailableBytes: pgWhole(m.memAvailableBytes),
    diskTotalBytes: pgWhole(m.diskTotalBytes),
    diskFreeBytes: pgWhole(m.diskFreeBytes),
  };
  const used = diskUsedPercent({
    diskTotalBytes: figures.diskTotalBytes ?? undefined,
    diskFreeBytes: figures.diskFreeBytes ?? undefined,
  });
  // One transaction: the alert is marked "warned" only together with the notification that says so.
  await agent.transaction(async (tx) => {
    const change = await tx.telemetry.record(
      { sampledAt, ...figures },
      {
        over: used !== null && used >= options.diskWarnPercent,
        under: used !== null && used < options.diskWarnPercent - DISK_WARN_HYSTERESIS,
      },
    );
    if (change !== "warned" || used === null) return;
    const free = prettyBytes(figures.diskFreeBytes ?? 0, { maximumFractionDigits: 1 });
    await tx.notifications.createForOwner({
      sessionId: null,
      kind: "disk_nearly_full",
      title: "Disk nearly full",
      body: `The workspace's volume is ${Math.floor(used)}% full (${free} free). Free some space or grow the volume before builds and sessions start failing.`,
      // One per crossing: the alert's own test-and-set already guarantees it, the key makes a retry harmless.
      dedupeKey: `disk-nearly-full-${sampledAt.getTime()}`,
      createdAt: sampledAt,
      push: true,
    });
  });
}
