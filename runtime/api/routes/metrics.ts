import { createHash, timingSafeEqual } from "node:crypto";
import { refreshFleetMetrics } from "../../domain/telemetry/fleet-metrics.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { HttpError } from "../errors.ts";

/**
 * Prometheus scrape endpoint. With BERTH_METRICS_TOKEN set it requires `Authorization: Bearer <token>`
 * (401 otherwise); unset, it is open as before, so bind the control plane privately or filter /metrics at
 * the load balancer. The fleet-wide figures (box telemetry, backup age, meter outbox backlog) are computed
 * from the database per scrape.
 */
export function metricsRoutes(router: ApiRouter, { metrics, store, config, log }: AppDeps): void {
  const expected = config.metrics.token === null ? null : digest(config.metrics.token);
  router.get("/metrics", async (ctx) => {
    if (expected) {
      const [scheme, token] = (ctx.get("authorization") || "").split(" ", 2);
      // Digests of both sides have the same length, so the comparison is constant-time whatever was sent.
      if (scheme?.toLowerCase() !== "bearer" || !token || !timingSafeEqual(digest(token), expected))
        throw new HttpError(401, "unauthorized", "/metrics needs the bearer token of BERTH_METRICS_TOKEN", {
          headers: { "WWW-Authenticate": 'Bearer realm="metrics"' },
        });
    }
    // Without the database the scrape still answers (process, HTTP, relay figures); the fleet gauges keep
    // their last values and the failure is logged, rather than losing every metric with a 500.
    await refreshFleetMetrics(store, metrics, {
      diskWarnPercent: config.diskWarnPercent,
      perWorkspace: config.metrics.perWorkspace,
    }).catch((err) => log.warn({ err }, "metrics: fleet figures not refreshed"));
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });
}

const digest = (s: string) => createHash("sha256").update(s).digest();
