/**
 * One shared SSE connection to `/api/v1/notifications/stream` for everything in a tab that follows it live:
 * the server sends a `notification` event for each new notification (the bell) and a `session` event
 * whenever Claude's state in one of the user's sessions changes (the views that list sessions). Opened on
 * the first subscriber, closed after the last one leaves. One a tab, not one per view: over HTTP/1.1 the
 * browser gives a host six connections across all its tabs, and every held stream takes one for good.
 */
import type { Notification, Session } from "./api.ts";

interface Events {
  notification: Notification;
  session: Session;
}
type Kind = keyof Events;

const listeners: { [K in Kind]: Set<(event: Events[K]) => void> } = {
  notification: new Set(),
  session: new Set(),
};
let source: EventSource | null = null;
let reopen: ReturnType<typeof setTimeout> | undefined;
let failures = 0;

const followed = () => listeners.notification.size + listeners.session.size > 0;

function open(): void {
  const es = new EventSource("/api/v1/notifications/stream");
  source = es;
  for (const k of Object.keys(listeners) as Kind[])
    es.addEventListener(k, (e) => {
      const data = JSON.parse((e as MessageEvent).data) as never;
      for (const l of listeners[k]) l(data);
    });
  es.addEventListener("open", () => {
    failures = 0;
  });
  // The browser reconnects a dropped stream by itself, but gives up for good on an answer that is not a
  // stream (a proxy's 502 while the control plane restarts, a 503): then a new one, after a pause.
  es.addEventListener("error", () => {
    if (es.readyState !== EventSource.CLOSED || source !== es) return;
    source = null;
    const seconds = Math.min(60, 2 * 2 ** failures++);
    reopen = setTimeout(() => {
      reopen = undefined;
      if (followed()) open();
    }, seconds * 1000);
  });
}

function subscribe<K extends Kind>(kind: K, listener: (event: Events[K]) => void): () => void {
  listeners[kind].add(listener);
  if (!source && reopen === undefined) open();
  return () => {
    listeners[kind].delete(listener);
    if (followed()) return;
    clearTimeout(reopen);
    reopen = undefined;
    source?.close();
    source = null;
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
