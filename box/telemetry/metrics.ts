/** A point-in-time metrics snapshot for the heartbeat; every reading is best effort. */
import { statfsSync } from "node:fs";
import { freemem, loadavg, totalmem } from "node:os";
import type { MetricsSnapshot } from "../protocol.ts";

export function systemMetrics(root: string): MetricsSnapshot {
  const m: MetricsSnapshot = {
    loadAvg1: loadavg()[0] ?? 0,
    memTotalBytes: totalmem(),
    memAvailableBytes: freemem(),
  };
  try {
    const fs = statfsSync(root);
    m.diskTotalBytes = fs.blocks * fs.bsize;
    m.diskFreeBytes = fs.bavail * fs.bsize;
  } catch {
    // the root may be gone (unmounted); the heartbeat still goes out
  }
  return m;
}
