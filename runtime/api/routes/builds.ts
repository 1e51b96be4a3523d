import { cancelBuild } from "../../domain/builds/cancel.ts";
import { followBuildLog } from "../../domain/builds/log-stream.ts";
import { presentBuild } from "../build-view.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { HttpError } from "../errors.ts";

export function buildRoutes(router: ApiRouter, deps: AppDeps): void {
  router.get("/api/v1/workspaces/:id/builds", async (ctx) => {
    ctx.body = { builds: (await ctx.state.scope.builds.listOf(ctx.params.id!)).map(presentBuild) };
  });

  router.get("/api/v1/builds/:id", async (ctx) => {
    ctx.body = { build: presentBuild(await ctx.state.scope.builds.get(ctx.params.id!)) };
  });

  router.post("/api/v1/builds/:id/cancel", async (ctx) => {
    const build = await cancelBuild(ctx.state.scope, ctx.params.id!, ctx.ip);
    ctx.status = 202;
    ctx.body = { build: presentBuild(build) };
  });

  /** SSE: every line from the start (or after `Last-Event-ID`), then live lines until the build ends. */
  router.get("/api/v1/builds/:id/log", async (ctx) => {
    const build = await ctx.state.scope.builds.get(ctx.params.id!);
    const raw = ctx.get("last-event-id") || (typeof ctx.query.after === "string" ? ctx.query.after : "0");
    const after = Number(raw);
    if (!Number.isSafeInteger(after) || after < 0) {
      throw new HttpError(400, "invalid_input", "Last-Event-ID must be a non-negative integer");
    }
    ctx.req.socket.setTimeout(0);
    ctx.req.socket.setNoDelay(true);
    ctx.set({
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache, no-transform",
      "X-Accel-Buffering": "no",
    });
    ctx.status = 200;
    ctx.body = followBuildLog(ctx.state.scope.builds, deps.listener, build.id, after, (cb) =>
      ctx.req.on("close", cb),
    );
  });
}
