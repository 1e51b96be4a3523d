import { PassThrough } from "node:stream";
import { sseFrame } from "../../domain/builds/log-stream.ts";
import { followNotifications, readInbox } from "../../domain/notifications/service.ts";
import { followSessionStates } from "../../domain/sessions/service.ts";
import type { NotificationRow } from "../../store/rows.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { presentSession } from "./sessions.ts";

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
  router.get("/api/v1/notifications", async (ctx) => {
    const { unread, notifications } = await readInbox(ctx.state.scope);
    ctx.body = {
      unread,
      notifications: notifications.map((r) => ({ ...present(r.notification), sessionName: r.sessionName })),
    };
  });

  router.post("/api/v1/notifications/:id/read", async (ctx) => {
    ctx.body = { notification: present(await ctx.state.scope.notifications.markRead(ctx.params.id!)) };
  });

  router.post("/api/v1/notifications/read-all", async (ctx) => {
    await ctx.state.scope.notifications.markAllRead();
    ctx.status = 204;
  });

  /**
   * SSE: each new notification of the signed-in user as it is stored (`notification`), and each change of
   * a session's Claude state (`session`, the session as the sessions API presents it).
   */
  router.get("/api/v1/notifications/stream", async (ctx) => {
    const out = new PassThrough();
    const unsubscribe = await followNotifications(ctx.state.scope, deps.listener, (n) =>
      out.write(sseFrame("notification", present(n))),
    );
    const unfollowSessions = await followSessionStates(ctx.state.scope, deps.listener, (s) =>
      out.write(sseFrame("session", presentSession(s))),
    );
    const keepalive = setInterval(() => out.write(": keepalive\n\n"), 15_000);
    ctx.req.on("close", () => {
      unsubscribe();
      unfollowSessions();
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
