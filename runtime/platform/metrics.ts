import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { HotHistogram } from "./hot-histogram.ts";

/** One registry per control plane instance, so tests can run several side by side. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Observed once per request, preview requests through the byte relay included: see hot-histogram.ts.
  const httpRequestDuration = new HotHistogram({
    name: "http_request_duration_seconds",
    help: "HTTP request duration by method, matched route and status",
    labelNames: ["method", "route", "status"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const buildsTotal = new Counter({
    name: "workspace_builds_total",
    help: "Finished workspace builds by transition, operation (create|wake|hibernate|destroy) and final status",
    labelNames: ["transition", "operation", "status"] as const,
    registers: [registry],
  });
  const buildDuration = new Histogram({
    name: "workspace_build_duration_seconds",
    help: "Time a build spent running (claim to finish), by transition and status",
    labelNames: ["transition", "status"] as const,
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200],
    registers: [registry],
  });
  const buildQueueWait = new Histogram({
    name: "workspace_build_queue_wait_seconds",
    help: "Time a build waited in the queue before a worker claimed it",
    labelNames: ["transition"] as const,
    buckets: [0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
    registers: [registry],
  });
  const transitionFailures = new Counter({
    name: "workspace_transition_failures_total",
    help: "Builds that failed or were canceled, by transition (start|stop|destroy) and operation: create (a start before the workspace's first successful one), wake (any later start), hibernate, destroy",
    labelNames: ["transition", "operation"] as const,
    registers: [registry],
  });
  const timeToReady = new Histogram({
    name: "workspace_time_to_ready_seconds",
    help: "From the start build's claim to the box agent reporting ready, by operation (create|wake)",
    labelNames: ["operation"] as const,
    buckets: [5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600],
    registers: [registry],
  });
  const reconcileFindings = new Counter({
    name: "reconciler_findings_total",
    help: "Drift the reconciler found, by kind",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  // Box reachability (runtime/boxnet/path-resolver.ts): every dial attempt the relay, the preview proxy and the
  // health checks make, by path; re-probes of the primary while on the fallback are counted apart.
  const upstreamConnections = new Counter({
    name: "box_upstream_connections_total",
    help: "Connection attempts to a box, by path (public|tailnet) and result (ok|timeout|refused|unreachable|error)",
    labelNames: ["path", "result"] as const,
    registers: [registry],
  });
  const upstreamConnectSeconds = new Histogram({
    name: "box_upstream_connect_seconds",
    help: "TCP connect time of successful connections to a box, by path",
    labelNames: ["path"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const upstreamUnreachable = new Counter({
    name: "box_upstream_unreachable_total",
    help: "Connections that failed on every path (the caller saw 'box unreachable')",
    registers: [registry],
  });
  const upstreamPathSwitches = new Counter({
    name: "box_upstream_path_switches_total",
    help: "Times a box's remembered path changed, by the path now in use",
    labelNames: ["to"] as const,
    registers: [registry],
  });
  const upstreamReprobes = new Counter({
    name: "box_upstream_reprobes_total",
    help: "Background probes of the primary (public) path while a box is on the fallback, by result",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  // Active health checks (runtime/health).
  const healthChecks = new Counter({
    name: "box_health_checks_total",
    help: "Health checks of boxes by check (http|handshake|heartbeat) and result (ok|fail)",
    labelNames: ["check", "result"] as const,
    registers: [registry],
  });
  const healthCheckSeconds = new Histogram({
    name: "box_health_check_seconds",
    help: "Duration of active health checks, by check",
    labelNames: ["check"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const healthTransitions = new Counter({
    name: "box_health_transitions_total",
    help: "Workspace state changes made by the health checks, by the state entered (unhealthy|ready)",
    labelNames: ["to"] as const,
    registers: [registry],
  });
  const healthRunSeconds = new Histogram({
    name: "box_health_run_seconds",
    help: "Duration of one health-probe run over every ready or unhealthy box",
    buckets: [0.1, 0.5, 1, 5, 10, 20, 30, 45, 60, 120],
    registers: [registry],
  });
  const billingMinutesMetered = new Counter({
    name: "billing_compute_minutes_metered_total",
    help: "Compute minutes written to meter_events by the metering tick",
    registers: [registry],
  });
  const billingEventsSent = new Counter({
    name: "billing_meter_events_sent_total",
    help: "Meter events Stripe accepted (duplicates of a previous try included), by outcome",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  const billingEventsFailed = new Counter({
    name: "billing_meter_events_failed_total",
    help: "Meter event sends that failed and wait for a retry",
    registers: [registry],
  });
  const billingUnsent = new Gauge({
    name: "billing_meter_events_unsent",
    help: "Compute minutes waiting for delivery to Stripe; computed at scrape from the database",
    registers: [registry],
  });
  const backup = backupMetrics(registry);
  const boxes = boxTelemetryMetrics(registry);
  return {
    registry,
    ...boxes,
    billingMinutesMetered,
    billingEventsSent,
    billingEventsFailed,
    billingUnsent,
    ...backup,
    upstreamConnections,
    upstreamConnectSeconds,
    upstreamUnreachable,
    upstreamPathSwitches,
    upstreamReprobes,
    healthChecks,
    healthCheckSeconds,
    healthTransitions,
    healthRunSeconds,
    httpRequestDuration,
    buildsTotal,
    buildDuration,
    buildQueueWait,
    transitionFailures,
    timeToReady,
    reconcileFindings,
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Backup success/failure (a seed metric), how long runs take and how much they add (domain/backups). */
function backupMetrics(registry: Registry) {
  return {
    backupRuns: new Counter({
      name: "backup_runs_total",
      help: "Finished backup runs by trigger (nightly, pre-stop, manual, pre-restore) and result",
      labelNames: ["trigger", "result"] as const,
      registers: [registry],
    }),
    backupDuration: new Histogram({
      name: "backup_duration_seconds",
      help: "Duration of finished backup runs, by trigger and result",
      labelNames: ["trigger", "result"] as const,
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
      registers: [registry],
    }),
    backupBytesAdded: new Histogram({
      name: "backup_bytes_added",
      help: "Bytes a successful backup run added to the repository",
      labelNames: ["trigger"] as const,
      buckets: [1e3, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10],
      registers: [registry],
    }),
    backupOldestSuccessAge: new Gauge({
      name: "backup_last_success_age_seconds_max",
      help: "Across live workspaces, the oldest time since the last successful backup (never backed up: since creation); computed at scrape",
      registers: [registry],
    }),
    backupStaleWorkspaces: new Gauge({
      name: "backup_stale_workspaces",
      help: "Live workspaces older than 36 h with no successful backup in the last 36 h",
      registers: [registry],
    }),
  };
}

/** Disk-usage ratios at which the fleet distribution below is cut (a snapshot histogram's `le`). */
export const DISK_RATIO_BOUNDS = [0.5, 0.75, 0.9, 0.95, 0.99] as const;

/**
 * Box telemetry from the agents' heartbeats (domain/telemetry), computed from the database at each scrape
 * so that every replica reports the same fleet-wide figures. Aggregates only by default: one series per
 * workspace grows with the fleet (thousands of boxes times three figures), which is what Prometheus
 * handles worst; `BERTH_METRICS_PER_WORKSPACE=1` adds the `_by_workspace` gauges for small fleets.
 */
function boxTelemetryMetrics(registry: Registry) {
  const registers = [registry];
  return {
    boxesReporting: new Gauge({
      name: "box_telemetry_reporting_boxes",
      help: "Live boxes whose agent sent telemetry in the last 5 minutes",
      registers,
    }),
    boxDiskOverThreshold: new Gauge({
      name: "box_disk_over_threshold_boxes",
      help: "Live boxes whose volume usage is at or above BERTH_DISK_WARN_PERCENT",
      registers,
    }),
    boxDiskUsedMax: new Gauge({
      name: "box_disk_used_ratio_max",
      help: "Highest volume usage (used/total, 0..1) among reporting boxes",
      registers,
    }),
    boxDiskUsedBoxes: new Gauge({
      name: "box_disk_used_ratio_boxes",
      help: "Reporting boxes whose volume usage ratio is at most `le` (cumulative, like histogram buckets)",
      labelNames: ["le"] as const,
      registers,
    }),
    boxMemoryUsedMax: new Gauge({
      name: "box_memory_used_ratio_max",
      help: "Highest memory usage ((total - available)/total) among reporting boxes",
      registers,
    }),
    boxLoadMax: new Gauge({
      name: "box_load1_max",
      help: "Highest 1-minute load average among reporting boxes",
      registers,
    }),
    boxDiskUsedByWorkspace: new Gauge({
      name: "box_disk_used_ratio_by_workspace",
      help: "Volume usage ratio per workspace (only with BERTH_METRICS_PER_WORKSPACE=1)",
      labelNames: ["workspace_id"] as const,
      registers,
    }),
    boxMemoryUsedByWorkspace: new Gauge({
      name: "box_memory_used_ratio_by_workspace",
      help: "Memory usage ratio per workspace (only with BERTH_METRICS_PER_WORKSPACE=1)",
      labelNames: ["workspace_id"] as const,
      registers,
    }),
    boxLoadByWorkspace: new Gauge({
      name: "box_load1_by_workspace",
      help: "1-minute load average per workspace (only with BERTH_METRICS_PER_WORKSPACE=1)",
      labelNames: ["workspace_id"] as const,
      registers,
    }),
  };
}
