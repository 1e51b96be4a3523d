import type { ApiRouter, AppDeps } from "../context.ts";

/** Liveness and readiness for load balancers; readiness includes the database. */
export function healthRoutes(router: ApiRouter, { store }: AppDeps): void {
  router.get("/healthz", (ctx) => {
    ctx.body = { status: "ok" };
  });

  router.get("/readyz", async (ctx) => {
    try {
      await Promise.race([
        store.ping(),
        new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 2_000).unref()),
      ]);
      ctx.body = { status: "ready" };
    } catch {
      ctx.status = 503;
      ctx.body = { status: "unavailable", checks: { database: "down" } };
    }
  });
}
