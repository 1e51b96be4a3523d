/**
 * One shared SSE connection to `/api/v1/notifications/stream` for the views that follow sessions live:
 * the server sends a `session` event whenever Claude's state in one of the user's sessions changes.
 * Opened on the first subscriber, closed after the last one leaves.
 */
import type { Session } from "./api.ts";

type Listener = (session: Session) => void;
const listeners = new Set<Listener>();
let source: EventSource | null = null;

export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  if (!source) {
    source = new EventSource("/api/v1/notifications/stream");
    source.addEventListener("session", (e) => {
      const session = JSON.parse((e as MessageEvent).data) as Session;
      for (const l of listeners) l(session);
    });
  }
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0 && source) {
      source.close();
      source = null;
    }
  };
}

/** Replaces the matching session of a list with its new version (other lists are left as they are). */
export function patchSessions(list: Session[], changed: Session): Session[] {
  return list.some((s) => s.id === changed.id) ? list.map((s) => (s.id === changed.id ? changed : s)) : list;
}
