import { z } from "zod";
import { SESSION_NAME_RE } from "../../../box/protocol.ts";
import { closeSession, createSession } from "../../domain/sessions/service.ts";
import type { SessionRow } from "../../store/rows.ts";
import { WORKSPACE_STATES } from "../../store/rows.ts";
import type { ApiRouter } from "../context.ts";
import { parseInput } from "../errors.ts";
import { doc, timestamp } from "../openapi/doc.ts";

/** The name is ours: it reaches tmux, which runs `#(...)` in names, so only ^[a-z0-9-]{1,32}$ is allowed. */
const createBody = z
  .object({ name: z.string().regex(SESSION_NAME_RE, "must match ^[a-z0-9-]{1,32}$").optional() })
  .strict();

export const Session = z.object({
  id: z.string(),
  workspaceId: z.string(),
  name: z.string(),
  createdAt: timestamp,
  lastActivityAt: timestamp.nullable(),
});

export function presentSession(s: SessionRow): z.input<typeof Session> {
  return {
    id: s.id,
    workspaceId: s.workspaceId,
    name: s.name,
    createdAt: s.createdAt,
    lastActivityAt: s.lastActivityAt,
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
    summary: "Open a tmux session on the box",
    body: createBody,
    responses: { 201: z.object({ session: Session }) },
    errors: [404, 409],
  });
  router.post("/api/v1/workspaces/:id/sessions", createDoc, async (ctx) => {
    const { name } = parseInput(createBody, ctx.request.body ?? {});
    const session = await createSession(ctx.state.scope, ctx.params.id!, name, ctx.ip);
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
