import { PassThrough } from "node:stream";
import { and, desc, eq, isNull, sql } from "drizzle-orm";
import { NOTIFICATION_CHANNEL } from "../../domain/agents/events.ts";
import { sseFrame } from "../../domain/builds/log-stream.ts";
import { NotFound } from "../../platform/errors.ts";
import { isUuid } from "../../platform/ids.ts";
import { notifications, sessions } from "../../store/schema.ts";
import type { ApiRouter, AppDeps } from "../context.ts";

type NotificationRow = typeof notifications.$inferSelect;

const present = (n: NotificationRow) => ({
  id: n.id,
  workspaceId: n.workspaceId,
  sessionId: n.sessionId,
  kind: n.kind,
  title: n.title,
  body: n.body,
  createdAt: n.createdAt,
  readAt: n.readAt,
});

/** "Claude needs you": the inbox (unread first), mark read, and a live SSE feed of new ones. */
export function notificationRoutes(router: ApiRouter, deps: AppDeps): void {
  const { db } = deps.database;
  const inbox = (userId: string, limit: number) =>
    db
      .select({ n: notifications, sessionName: sessions.name })
      .from(notifications)
      .leftJoin(sessions, eq(sessions.id, notifications.sessionId))
      .where(eq(notifications.userId, userId))
      .orderBy(sql`${notifications.readAt} IS NOT NULL`, desc(notifications.createdAt))
      .limit(limit);

  router.get("/api/v1/notifications", async (ctx) => {
    const rows = await inbox(ctx.state.actor.userId, 100);
    const [{ unread } = { unread: 0 }] = await db
      .select({ unread: sql<number>`count(*)::int` })
      .from(notifications)
      .where(and(eq(notifications.userId, ctx.state.actor.userId), isNull(notifications.readAt)));
    ctx.body = { unread, notifications: rows.map((r) => ({ ...present(r.n), sessionName: r.sessionName })) };
  });

  router.post("/api/v1/notifications/:id/read", async (ctx) => {
    const id = ctx.params.id!;
    if (!isUuid(id)) throw new NotFound("notification");
    const [row] = await db
      .update(notifications)
      .set({ readAt: sql`coalesce(${notifications.readAt}, now())` })
      .where(and(eq(notifications.id, id), eq(notifications.userId, ctx.state.actor.userId)))
      .returning();
    if (!row) throw new NotFound("notification");
    ctx.body = { notification: present(row) };
  });

  router.post("/api/v1/notifications/read-all", async (ctx) => {
    await db
      .update(notifications)
      .set({ readAt: new Date() })
      .where(and(eq(notifications.userId, ctx.state.actor.userId), isNull(notifications.readAt)));
    ctx.status = 204;
  });

  /** SSE: each new notification of the signed-in user as it is stored. */
  router.get("/api/v1/notifications/stream", async (ctx) => {
    const userId = ctx.state.actor.userId;
    const out = new PassThrough();
    const unsubscribe = await deps.listener.subscribe(NOTIFICATION_CHANNEL, async (payload) => {
      const [owner, id] = payload.split(":");
      if (owner !== userId || !id) return;
      const [n] = await db
        .select()
        .from(notifications)
        .where(and(eq(notifications.id, id), eq(notifications.userId, userId)));
      if (n) out.write(sseFrame("notification", present(n)));
    });
    const keepalive = setInterval(() => out.write(": keepalive\n\n"), 15_000);
    ctx.req.on("close", () => {
      unsubscribe();
      clearInterval(keepalive);
      out.end();
    });
    ctx.req.socket.setTimeout(0);
    ctx.set({
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache, no-transform",
    });
    ctx.status = 200;
    out.write("retry: 2000\n\n");
    ctx.body = out;
  });
}
