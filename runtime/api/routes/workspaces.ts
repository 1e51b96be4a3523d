import { z } from "zod";
import type { TransitionResult } from "../../domain/workspaces/service.ts";
import type { WorkspaceRow } from "../../store/rows.ts";
import { WORKSPACE_STATES } from "../../store/rows.ts";
import { Build, presentBuild } from "../build-view.ts";
import type { ApiRouter, AppContext, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";
import { doc, timestamp } from "../openapi/doc.ts";

export const Workspace = z.object({
  id: z.string(),
  name: z.string(),
  state: z.enum(WORKSPACE_STATES),
  location: z.string(),
  serverType: z.string(),
  volumeSizeGb: z.number().int(),
  stateChangedAt: timestamp,
  createdAt: timestamp,
  idleTimeoutMinutes: z
    .number()
    .int()
    .nullable()
    .describe("idle autostop after this many minutes; null: never"),
  autostopWarnedAt: timestamp.nullable().describe("when the owner was warned of an autostop still pending"),
});

/** A requested change: the workspace, the build that carries it out, and whether it repeated one in flight. */
const TransitionAnswer = z.object({
  workspace: Workspace,
  build: Build,
  duplicate: z.boolean().describe("true (and 200) when the same change was already under way"),
});

/** The client-facing shape of a workspace: no addresses, no credentials, ever. */
export function presentWorkspace(w: WorkspaceRow): z.input<typeof Workspace> {
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
  router.get(
    "/api/v1/workspaces",
    doc({
      summary: "List your workspaces",
      responses: { 200: z.object({ workspaces: z.array(Workspace) }) },
    }),
    async (ctx) => {
      ctx.body = { workspaces: (await ctx.state.scope.workspaces.list()).map(presentWorkspace) };
    },
  );

  const transition = (summary: string, extra: { body?: z.ZodType } = {}) =>
    doc({
      summary,
      ...extra,
      responses: { 200: TransitionAnswer, 202: TransitionAnswer },
      errors: [404, 409],
    });

  router.post(
    "/api/v1/workspaces",
    transition("Create a workspace; its first build starts it", { body: createBody }),
    async (ctx) => {
      const input = parseInput(createBody, ctx.request.body ?? {});
      answer(ctx, await deps.workspaces.create(ctx.state.scope, input, ctx.ip));
    },
  );

  router.get(
    "/api/v1/workspaces/:id",
    doc({
      summary: "Read a workspace",
      responses: { 200: z.object({ workspace: Workspace }) },
      errors: [404],
    }),
    async (ctx) => {
      ctx.body = { workspace: presentWorkspace(await ctx.state.scope.workspaces.get(ctx.params.id!)) };
    },
  );

  const actions = {
    hibernate: "Hibernate: stop the server, keep the disk",
    wake: "Wake a hibernated workspace",
  } as const;
  for (const [action, summary] of Object.entries(actions)) {
    router.post(`/api/v1/workspaces/:id/${action}`, transition(summary), async (ctx) => {
      answer(
        ctx,
        await deps.workspaces.request(ctx.state.scope, ctx.params.id!, action as keyof typeof actions, {
          ip: ctx.ip,
        }),
      );
    });
  }

  /** The owner's settings: the idle autostop timeout (null turns autostop off). */
  const one = z.object({ workspace: Workspace });
  router.patch(
    "/api/v1/workspaces/:id",
    doc({
      summary: "Change a workspace's settings: the idle autostop timeout (null turns autostop off)",
      body: settingsBody,
      responses: { 200: one },
      errors: [404],
    }),
    async (ctx) => {
      const { idleTimeoutMinutes } = parseInput(settingsBody, ctx.request.body ?? {});
      const workspace = await ctx.state.scope.workspaces.setIdleTimeout(ctx.params.id!, idleTimeoutMinutes);
      ctx.body = { workspace: presentWorkspace(workspace) };
    },
  );

  /** "Keep running": the answer to an autostop warning; the idle clock starts again now. */
  router.post(
    "/api/v1/workspaces/:id/keep-running",
    doc({
      summary: "Keep running: answer an autostop warning; the idle clock starts again now",
      responses: { 200: one },
      errors: [404],
    }),
    async (ctx) => {
      const workspace = await ctx.state.scope.workspaces.keepRunning(ctx.params.id!, new Date());
      ctx.body = { workspace: presentWorkspace(workspace) };
    },
  );

  router.delete("/api/v1/workspaces/:id", transition("Destroy a workspace and its disk"), async (ctx) => {
    answer(ctx, await deps.workspaces.request(ctx.state.scope, ctx.params.id!, "destroy", { ip: ctx.ip }));
  });
}
