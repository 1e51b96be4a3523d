import { PassThrough } from "node:stream";
import { z } from "zod";
import { sseFrame } from "../../domain/builds/log-stream.ts";
import { followNotifications, readInbox } from "../../domain/notifications/service.ts";
import { followSessionStates } from "../../domain/sessions/service.ts";
import type { NotificationRow } from "../../store/rows.ts";
import { whenClientGone } from "../client-gone.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { doc, timestamp } from "../openapi/doc.ts";
import { presentSession, Session } from "./sessions.ts";

const Notification = z.object({
  id: z.string(),
  workspaceId: z.string(),
  sessionId: z.string().nullable(),
  kind: z.string(),
  title: z.string(),
  body: z.string(),
  createdAt: timestamp,
  readAt: timestamp.nullable(),
});

const present = (n: NotificationRow): z.input<typeof Notification> => ({
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
  const inboxDoc = doc({
    summary: "Your notifications, unread first",
    responses: {
      200: z.object({
        unread: z.number().int(),
        notifications: z.array(Notification.extend({ sessionName: z.string().nullable() })),
      }),
    },
  });
  router.get("/api/v1/notifications", inboxDoc, async (ctx) => {
    const { unread, notifications } = await readInbox(ctx.state.scope);
    ctx.body = {
      unread,
      notifications: notifications.map((r) => ({ ...present(r.notification), sessionName: r.sessionName })),
    };
  });

  const readDoc = doc({
    summary: "Mark a notification read",
    responses: { 200: z.object({ notification: Notification }) },
    errors: [404],
  });
  router.post("/api/v1/notifications/:id/read", readDoc, async (ctx) => {
    ctx.body = { notification: present(await ctx.state.scope.notifications.markRead(ctx.params.id!)) };
  });

  const readAllDoc = doc({ summary: "Mark every notification read", responses: { 204: null } });
  router.post("/api/v1/notifications/read-all", readAllDoc, async (ctx) => {
    await ctx.state.scope.notifications.markAllRead();
    ctx.status = 204;
  });

  /**
   * SSE: each new notification of the signed-in user as it is stored (`notification`), and each change of
   * a session's Claude state (`session`, the session as the sessions API presents it).
   */
  const streamDoc = doc({
    summary: "New notifications, and sessions' Claude state changes, as they happen",
    responses: {},
    sse: { events: { notification: Notification, session: Session } },
  });
  router.get("/api/v1/notifications/stream", streamDoc, async (ctx) => {
    const out = new PassThrough();
    // What the stream takes for its client, released when the client leaves (at once if it did meanwhile).
    const releases: Array<() => void> = [];
    let closed = false;
    const close = () => {
      closed = true;
      for (const release of releases.splice(0)) release();
      out.end();
    };
    whenClientGone(ctx.req, close);
    const hold = (release: () => void) => (closed ? release() : releases.push(release));
    // An event looked up as the client left arrives after the end: `out` may have no reader to tell.
    const send = (frame: string) => {
      if (!closed) out.write(frame);
    };
    hold(
      await followNotifications(ctx.state.scope, deps.listener, (n) =>
        send(sseFrame("notification", present(n))),
      ),
    );
    hold(
      await followSessionStates(ctx.state.scope, deps.listener, (s) =>
        send(sseFrame("session", presentSession(s))),
      ),
    );
    if (closed) return;
    const keepalive = setInterval(() => send(": keepalive\n\n"), 15_000);
    hold(() => clearInterval(keepalive));
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
