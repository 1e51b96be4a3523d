import type { ApiRouter, AppDeps } from "../context.ts";

/** Prometheus scrape endpoint. Bind the control plane privately or filter /metrics at the load balancer. */
export function metricsRoutes(router: ApiRouter, { metrics }: AppDeps): void {
  router.get("/metrics", async (ctx) => {
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });
}
