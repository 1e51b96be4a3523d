import { useEffect, useState } from "preact/hooks";
import { api, type Notification } from "../api.ts";
import { href } from "../router.ts";

/**
 * "Claude needs you": an unread count and a feed, live over SSE. A click marks the notification read and
 * jumps to the session that raised it. When the tab is hidden, the browser's Notification API shows it too.
 */
export function NotificationBell() {
  const [items, setItems] = useState<Notification[]>([]);
  const [unread, setUnread] = useState(0);
  const [open, setOpen] = useState(false);

  const load = () =>
    api<{ unread: number; notifications: Notification[] }>("/api/v1/notifications")
      .then((r) => {
        setItems(r.notifications);
        setUnread(r.unread);
      })
      .catch(() => {});

  useEffect(() => {
    load();
    const source = new EventSource("/api/v1/notifications/stream");
    source.addEventListener("notification", (e) => {
      const n = JSON.parse((e as MessageEvent).data) as Notification;
      load();
      if (document.hidden && "Notification" in window && Notification.permission === "granted") {
        new Notification(n.title, { body: n.body, tag: n.id });
      }
    });
    return () => source.close();
  }, []);

  const pick = async (n: Notification) => {
    await api(`/api/v1/notifications/${n.id}/read`, { method: "POST" }).catch(() => {});
    setOpen(false);
    load();
    if (n.sessionId) location.hash = href.terminal(n.sessionId);
    else location.hash = href.workspace(n.workspaceId);
  };

  const toggle = () => {
    setOpen(!open);
    if ("Notification" in window && Notification.permission === "default")
      void Notification.requestPermission();
  };

  return (
    <div class="bell">
      <button
        type="button"
        aria-expanded={open}
        aria-label={`notifications, ${unread} unread`}
        onClick={toggle}
      >
        <svg
          width="18"
          height="18"
          viewBox="0 0 24 24"
          aria-hidden="true"
          fill="none"
          stroke="currentColor"
          stroke-width="2"
        >
          <path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9M13.7 21a2 2 0 0 1-3.4 0" />
        </svg>
        {unread > 0 && <span class="count">{unread}</span>}
      </button>
      {open && (
        <ul class="feed" aria-label="notifications">
          {items.length === 0 && <li class="muted">Nothing yet.</li>}
          {items.map((n) => (
            <li key={n.id} class={n.readAt ? "read" : "unread"}>
              <button type="button" onClick={() => pick(n)}>
                <strong>{n.title}</strong>
                <span>{n.body}</span>
                <span class="muted">
                  {n.sessionName ? `${n.sessionName} · ` : ""}
                  {new Date(n.createdAt).toLocaleTimeString()}
                </span>
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
