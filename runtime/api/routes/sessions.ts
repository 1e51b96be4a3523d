import { randomBytes } from "node:crypto";
import { and, eq, isNull } from "drizzle-orm";
import { z } from "zod";
import { SESSION_NAME_RE } from "../../../box/protocol.ts";
import { writeAudit } from "../../store/audit-log.ts";
import { sessions } from "../../store/schema.ts";
import type { SessionRow } from "../../store/scope.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { HttpError, parseInput } from "../errors.ts";

export const MAX_SESSIONS_PER_WORKSPACE = 16;

/** The name is ours: it reaches tmux, which runs `#(...)` in names, so only ^[a-z0-9-]{1,32}$ is allowed. */
const createBody = z
  .object({ name: z.string().regex(SESSION_NAME_RE, "must match ^[a-z0-9-]{1,32}$").optional() })
  .strict();

export function presentSession(s: SessionRow) {
  return {
    id: s.id,
    workspaceId: s.workspaceId,
    name: s.name,
    createdAt: s.createdAt,
    lastActivityAt: s.lastActivityAt,
  };
}

/**
 * Sessions are rows; the box agent makes the tmux sessions match them on its next heartbeat, which is how
 * they come back after a wake.
 */
export function sessionRoutes(router: ApiRouter, deps: AppDeps): void {
  const { db } = deps.database;

  router.get("/api/v1/workspaces/:id/sessions", async (ctx) => {
    ctx.body = { sessions: (await ctx.state.scope.sessionsOf(ctx.params.id!)).map(presentSession) };
  });

  router.get("/api/v1/sessions/:id", async (ctx) => {
    const { session, workspace } = await ctx.state.scope.session(ctx.params.id!);
    ctx.body = { session: presentSession(session), workspace: { id: workspace.id, state: workspace.state } };
  });

  router.post("/api/v1/workspaces/:id/sessions", async (ctx) => {
    const ws = await ctx.state.scope.workspace(ctx.params.id!);
    const { name } = parseInput(createBody, ctx.request.body ?? {});
    const session = await db.transaction(async (tx) => {
      const open = await tx
        .select({ id: sessions.id, name: sessions.name })
        .from(sessions)
        .where(and(eq(sessions.workspaceId, ws.id), isNull(sessions.closedAt)))
        .for("update");
      if (open.length >= MAX_SESSIONS_PER_WORKSPACE) {
        throw new HttpError(
          409,
          "session_limit",
          `a workspace holds at most ${MAX_SESSIONS_PER_WORKSPACE} sessions`,
        );
      }
      const wanted = name ?? `s-${randomBytes(3).toString("hex")}`;
      if (open.some((s) => s.name === wanted)) {
        throw new HttpError(409, "session_exists", `a session named ${wanted} is already open`);
      }
      const [row] = await tx
        .insert(sessions)
        .values({ workspaceId: ws.id, name: wanted, createdById: ctx.state.actor.userId })
        .returning();
      await writeAudit(tx, {
        actor: { kind: "user", userId: ctx.state.actor.userId },
        action: "session.create",
        targetType: "session",
        targetId: row!.id,
        ip: ctx.ip,
        details: { workspaceId: ws.id, name: wanted },
      });
      return row!;
    });
    ctx.status = 201;
    ctx.body = { session: presentSession(session) };
  });

  router.delete("/api/v1/workspaces/:id/sessions/:sessionId", async (ctx) => {
    const ws = await ctx.state.scope.workspace(ctx.params.id!);
    const { session } = await ctx.state.scope.session(ctx.params.sessionId!);
    if (session.workspaceId !== ws.id) throw new HttpError(404, "not_found", "session not found");
    await db.transaction(async (tx) => {
      await tx.update(sessions).set({ closedAt: new Date() }).where(eq(sessions.id, session.id));
      await writeAudit(tx, {
        actor: { kind: "user", userId: ctx.state.actor.userId },
        action: "session.close",
        targetType: "session",
        targetId: session.id,
        ip: ctx.ip,
      });
    });
    ctx.status = 204;
  });
}
