import { z } from "zod";
import { cancelBuild } from "../../domain/builds/cancel.ts";
import { followBuildLog } from "../../domain/builds/log-stream.ts";
import { Build, presentBuild } from "../build-view.ts";
import { whenClientGone } from "../client-gone.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { HttpError } from "../errors.ts";
import { doc, timestamp } from "../openapi/doc.ts";

/** The build log's SSE events (domain/builds/log-stream.ts writes them). */
export const BuildLogEvents = {
  line: z.object({
    seq: z.number().int().describe("also the event's id: resume after it with Last-Event-ID"),
    at: timestamp,
    level: z
      .enum(["info", "warn", "error", "stage"])
      .describe("`stage`: a new step began; its message names it"),
    stage: z.string().nullable().describe("the step in progress, for a progress display"),
    message: z.string(),
  }),
  end: z.object({ status: z.string().describe("the build's final status: succeeded, failed or canceled") }),
};

const logQuery = z.object({
  after: z
    .string()
    .regex(/^[0-9]+$/)
    .optional()
    .describe("start after this line (like Last-Event-ID)"),
});

export function buildRoutes(router: ApiRouter, deps: AppDeps): void {
  const one = z.object({ build: Build });
  router.get(
    "/api/v1/workspaces/:id/builds",
    doc({
      summary: "A workspace's builds",
      responses: { 200: z.object({ builds: z.array(Build) }) },
      errors: [404],
    }),
    async (ctx) => {
      ctx.body = { builds: (await ctx.state.scope.builds.listOf(ctx.params.id!)).map(presentBuild) };
    },
  );

  router.get(
    "/api/v1/builds/:id",
    doc({ summary: "Read a build", responses: { 200: one }, errors: [404] }),
    async (ctx) => {
      ctx.body = { build: presentBuild(await ctx.state.scope.builds.get(ctx.params.id!)) };
    },
  );

  const cancelDoc = doc({
    summary: "Ask a running build to stop",
    responses: { 202: one },
    errors: [404, 409],
  });
  router.post("/api/v1/builds/:id/cancel", cancelDoc, async (ctx) => {
    const build = await cancelBuild(ctx.state.scope, ctx.params.id!, ctx.ip);
    ctx.status = 202;
    ctx.body = { build: presentBuild(build) };
  });

  /** SSE: every line from the start (or after `Last-Event-ID`), then live lines until the build ends. */
  const logDoc = doc({
    summary: "Stream a build's log",
    description:
      "Every line from the start (or after Last-Event-ID / ?after=), then live lines; `end` closes it.",
    query: logQuery,
    responses: {},
    sse: { events: BuildLogEvents, resumable: true },
    errors: [404],
  });
  router.get("/api/v1/builds/:id/log", logDoc, async (ctx) => {
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
      whenClientGone(ctx.req, cb),
    );
  });
}
