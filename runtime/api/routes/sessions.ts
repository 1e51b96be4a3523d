import { z } from "zod";
import { MAX_TASK_CHARS, projectName, SESSION_MODES, SESSION_NAME_RE } from "../../../box/protocol.ts";
import { closeSession, createSession } from "../../domain/sessions/service.ts";
import type { SessionRow } from "../../store/rows.ts";
import type { ApiRouter } from "../context.ts";
import { parseInput } from "../errors.ts";

/** The name is ours: it reaches tmux, which runs `#(...)` in names, so only ^[a-z0-9-]{1,32}$ is allowed. */
const createBody = z
  .object({
    name: z.string().regex(SESSION_NAME_RE, "must match ^[a-z0-9-]{1,32}$").optional(),
    /** engineer (default): Claude started by hand. guided: Claude starts in `project` on `task`. */
    mode: z.enum(SESSION_MODES).default("engineer"),
    project: projectName.optional(),
    task: z.string().trim().min(1, "must not be empty").max(MAX_TASK_CHARS).optional(),
  })
  .strict()
  .superRefine((b, ctx) => {
    if (b.mode === "guided" && !b.task)
      ctx.addIssue({ code: "custom", path: ["task"], message: "a guided session needs a task" });
    if (b.mode === "engineer")
      for (const key of ["project", "task"] as const)
        if (b[key] !== undefined)
          ctx.addIssue({ code: "custom", path: [key], message: "only for guided sessions" });
  });

export function presentSession(s: SessionRow) {
  return {
    id: s.id,
    workspaceId: s.workspaceId,
    name: s.name,
    mode: s.mode,
    project: s.project,
    task: s.task,
    createdAt: s.createdAt,
    lastActivityAt: s.lastActivityAt,
    /** What Claude Code is doing there (null until its first hook): working, needs_you, idle, error, ended. */
    claude: s.claudeState
      ? { state: s.claudeState, detail: s.claudeStateDetail, since: s.claudeStateSince }
      : null,
  };
}

/** Sessions of a workspace: list, read, open one (a tmux session on the box) and close it. */
export function sessionRoutes(router: ApiRouter): void {
  router.get("/api/v1/workspaces/:id/sessions", async (ctx) => {
    ctx.body = { sessions: (await ctx.state.scope.sessions.listOf(ctx.params.id!)).map(presentSession) };
  });

  router.get("/api/v1/sessions/:id", async (ctx) => {
    const { session, workspace } = await ctx.state.scope.sessions.get(ctx.params.id!);
    ctx.body = { session: presentSession(session), workspace: { id: workspace.id, state: workspace.state } };
  });

  router.post("/api/v1/workspaces/:id/sessions", async (ctx) => {
    const { name, mode, project, task } = parseInput(createBody, ctx.request.body ?? {});
    const guided = mode === "guided" ? { project: project ?? null, task: task! } : undefined;
    const session = await createSession(ctx.state.scope, ctx.params.id!, name, ctx.ip, guided);
    ctx.status = 201;
    ctx.body = { session: presentSession(session) };
  });

  router.delete("/api/v1/workspaces/:id/sessions/:sessionId", async (ctx) => {
    await closeSession(ctx.state.scope, ctx.params.id!, ctx.params.sessionId!, ctx.ip);
    ctx.status = 204;
  });
}
