import { z } from "zod";
import {
  CLAUDE_STATES,
  MAX_TASK_CHARS,
  projectName,
  SESSION_MODES,
  SESSION_NAME_RE,
} from "../../../box/protocol.ts";
import { closeSession, createSession } from "../../domain/sessions/service.ts";
import type { SessionRow } from "../../store/rows.ts";
import { WORKSPACE_STATES } from "../../store/rows.ts";
import type { ApiRouter } from "../context.ts";
import { parseInput } from "../errors.ts";
import { doc, timestamp } from "../openapi/doc.ts";

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

export const Session = z.object({
  id: z.string(),
  workspaceId: z.string(),
  name: z.string(),
  mode: z.enum(SESSION_MODES),
  project: z.string().nullable(),
  task: z.string().nullable(),
  createdAt: timestamp,
  lastActivityAt: timestamp.nullable(),
  claude: z
    .object({ state: z.enum(CLAUDE_STATES), detail: z.string().nullable(), since: timestamp.nullable() })
    .nullable()
    .describe("what Claude Code is doing there, from its hooks; null until its first hook"),
});

export function presentSession(s: SessionRow): z.input<typeof Session> {
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
  const listDoc = doc({
    summary: "A workspace's open tmux sessions",
    responses: { 200: z.object({ sessions: z.array(Session) }) },
    errors: [404],
  });
  router.get("/api/v1/workspaces/:id/sessions", listDoc, async (ctx) => {
    ctx.body = { sessions: (await ctx.state.scope.sessions.listOf(ctx.params.id!)).map(presentSession) };
  });

  const readDoc = doc({
    summary: "Read a session and its workspace's state",
    responses: {
      200: z.object({
        session: Session,
        workspace: z.object({ id: z.string(), state: z.enum(WORKSPACE_STATES) }),
      }),
    },
    errors: [404],
  });
  router.get("/api/v1/sessions/:id", readDoc, async (ctx) => {
    const { session, workspace } = await ctx.state.scope.sessions.get(ctx.params.id!);
    ctx.body = { session: presentSession(session), workspace: { id: workspace.id, state: workspace.state } };
  });

  const createDoc = doc({
    summary: "Open a tmux session on the box (engineer, or guided: Claude starts on a task)",
    body: createBody,
    responses: { 201: z.object({ session: Session }) },
    errors: [404, 409],
  });
  router.post("/api/v1/workspaces/:id/sessions", createDoc, async (ctx) => {
    const { name, mode, project, task } = parseInput(createBody, ctx.request.body ?? {});
    const guided = mode === "guided" ? { project: project ?? null, task: task! } : undefined;
    const session = await createSession(ctx.state.scope, ctx.params.id!, name, ctx.ip, guided);
    ctx.status = 201;
    ctx.body = { session: presentSession(session) };
  });

  const closeDoc = doc({
    summary: "Close a session (kills its tmux session)",
    responses: { 204: null },
    errors: [404],
  });
  router.delete("/api/v1/workspaces/:id/sessions/:sessionId", closeDoc, async (ctx) => {
    await closeSession(ctx.state.scope, ctx.params.id!, ctx.params.sessionId!, ctx.ip);
    ctx.status = 204;
  });
}
