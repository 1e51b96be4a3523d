/**
 * One shared SSE connection to `/api/v1/notifications/stream` for everything in a tab that follows it live:
 * the server sends a `notification` event for each new notification (the bell) and a `session` event
 * whenever Claude's state in one of the user's sessions changes (the views that list sessions). Opened on
 * the first subscriber, closed after the last one leaves. One a tab, not one per view: over HTTP/1.1 the
 * browser gives a host six connections across all its tabs, and every held stream takes one for good.
 * Opened again after an answer that is not a stream (stream.ts).
 */
import type { Notification, Session } from "./api.ts";
import { followStream } from "./stream.ts";

interface Events {
  notification: Notification;
  session: Session;
}
type Kind = keyof Events;

const listeners: { [K in Kind]: Set<(event: Events[K]) => void> } = {
  notification: new Set(),
  session: new Set(),
};
let stream: { close(): void } | null = null;

function subscribe<K extends Kind>(kind: K, listener: (event: Events[K]) => void): () => void {
  listeners[kind].add(listener);
  stream ??= followStream("/api/v1/notifications/stream", (es) => {
    for (const k of Object.keys(listeners) as Kind[])
      es.addEventListener(k, (e) => {
        const data = JSON.parse((e as MessageEvent).data) as never;
        for (const l of listeners[k]) l(data);
      });
  });
  return () => {
    listeners[kind].delete(listener);
    if (listeners.notification.size + listeners.session.size > 0) return;
    stream?.close();
    stream = null;
  };
}

export function onSessionChange(listener: (session: Session) => void): () => void {
  return subscribe("session", listener);
}

export function onNotification(listener: (notification: Notification) => void): () => void {
  return subscribe("notification", listener);
}

/** Replaces the matching session of a list with its new version (other lists are left as they are). */
export function patchSessions(list: Session[], changed: Session): Session[] {
  return list.some((s) => s.id === changed.id) ? list.map((s) => (s.id === changed.id ? changed : s)) : list;
}
