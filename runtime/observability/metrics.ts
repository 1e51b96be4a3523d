import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

/** One registry per control plane instance, so tests can run several side by side. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const httpRequestDuration = new Histogram({
    name: "http_request_duration_seconds",
    help: "HTTP request duration by method, matched route and status",
    labelNames: ["method", "route", "status"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const buildsTotal = new Counter({
    name: "workspace_builds_total",
    help: "Finished workspace builds by transition and final status",
    labelNames: ["transition", "status"] as const,
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
    help: "Hibernate (stop), wake/create (start) and destroy builds that failed or were canceled",
    labelNames: ["transition"] as const,
    registers: [registry],
  });
  const timeToReady = new Histogram({
    name: "workspace_time_to_ready_seconds",
    help: "From the start build's claim to the box agent reporting ready",
    buckets: [5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600],
    registers: [registry],
  });
  const reconcileFindings = new Counter({
    name: "reconciler_findings_total",
    help: "Drift the reconciler found, by kind",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  return {
    registry,
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
