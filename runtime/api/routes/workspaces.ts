import { z } from "zod";
import type { TransitionResult } from "../../domain/workspaces/service.ts";
import type { WorkspaceRow } from "../../store/rows.ts";
import { presentBuild } from "../build-view.ts";
import type { ApiRouter, AppContext, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";

/** The client-facing shape of a workspace: no addresses, no credentials, ever. */
export function presentWorkspace(w: WorkspaceRow) {
  return {
    id: w.id,
    name: w.name,
    state: w.state,
    location: w.location,
    serverType: w.serverType,
    volumeSizeGb: w.volumeSizeGb,
    stateChangedAt: w.stateChangedAt,
    createdAt: w.createdAt,
    /** Idle autostop: minutes of idleness before it hibernates (null: never), and a pending warning. */
    idleTimeoutMinutes: w.idleTimeoutMinutes,
    autostopWarnedAt: w.autostopWarnedAt,
  };
}

const settingsBody = z
  .object({
    idleTimeoutMinutes: z
      .number()
      .int("must be a whole number of minutes")
      .min(5, "must be at least 5 minutes")
      .max(1440, "must be at most 1440 minutes (a day)")
      .nullable(),
  })
  .strict();

const createBody = z
  .object({
    name: z
      .string()
      .trim()
      .min(1)
      .max(64)
      .regex(/^[\p{L}\p{N} ._-]+$/u, "letters, digits, spaces, '.', '_' and '-' only")
      .default("workspace"),
    location: z
      .string()
      .regex(/^[a-z0-9-]{2,32}$/)
      .optional(),
    serverType: z
      .string()
      .regex(/^[a-z0-9-]{2,32}$/)
      .optional(),
    volumeSizeGb: z.number().int().min(10).max(10240).optional(),
  })
  .strict();

function answer(ctx: AppContext, result: TransitionResult): void {
  ctx.status = result.duplicate ? 200 : 202;
  ctx.body = {
    workspace: presentWorkspace(result.workspace),
    build: presentBuild(result.build),
    duplicate: result.duplicate,
  };
}

export function workspaceRoutes(router: ApiRouter, deps: AppDeps): void {
  router.get("/api/v1/workspaces", async (ctx) => {
    ctx.body = { workspaces: (await ctx.state.scope.workspaces.list()).map(presentWorkspace) };
  });

  router.post("/api/v1/workspaces", async (ctx) => {
    const input = parseInput(createBody, ctx.request.body ?? {});
    answer(ctx, await deps.workspaces.create(ctx.state.scope, input, ctx.ip));
  });

  router.get("/api/v1/workspaces/:id", async (ctx) => {
    ctx.body = { workspace: presentWorkspace(await ctx.state.scope.workspaces.get(ctx.params.id!)) };
  });

  for (const action of ["hibernate", "wake"] as const) {
    router.post(`/api/v1/workspaces/:id/${action}`, async (ctx) => {
      answer(ctx, await deps.workspaces.request(ctx.state.scope, ctx.params.id!, action, { ip: ctx.ip }));
    });
  }

  /** The owner's settings: the idle autostop timeout (null turns autostop off). */
  router.patch("/api/v1/workspaces/:id", async (ctx) => {
    const { idleTimeoutMinutes } = parseInput(settingsBody, ctx.request.body ?? {});
    const workspace = await ctx.state.scope.workspaces.setIdleTimeout(ctx.params.id!, idleTimeoutMinutes);
    ctx.body = { workspace: presentWorkspace(workspace) };
  });

  /** "Keep running": the answer to an autostop warning; the idle clock starts again now. */
  router.post("/api/v1/workspaces/:id/keep-running", async (ctx) => {
    const workspace = await ctx.state.scope.workspaces.keepRunning(ctx.params.id!, new Date());
    ctx.body = { workspace: presentWorkspace(workspace) };
  });

  router.delete("/api/v1/workspaces/:id", async (ctx) => {
    answer(ctx, await deps.workspaces.request(ctx.state.scope, ctx.params.id!, "destroy", { ip: ctx.ip }));
  });
}
