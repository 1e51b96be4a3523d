import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { api, humanError, type Notification, type Workspace } from "../api.ts";
import { ago } from "../format.ts";
import { onNotification } from "../live.ts";
import { enablePush, pushEnabled, pushSupported, registerServiceWorker, startPresence } from "../push.ts";
import { href } from "../router.ts";

interface Inbox {
  unread: number;
  notifications: Notification[];
  /** Ids of the user's workspaces that still exist (the API lists live ones only). */
  live: Set<string>;
}

/**
 * "Claude needs you": an unread count and a feed, live over SSE. A click marks the notification read and
 * jumps to the session that raised it; "Mark all read" clears the count; Escape or a click elsewhere
 * closes the feed. When the tab is hidden, the browser's Notification API shows new ones too.
 *
 * A destroyed workspace's notifications stay in the feed as history, greyed and labelled, but open
 * nothing (there is no session to open) and do not count as unread: the badge is "things that need
 * you", and nothing in a destroyed workspace can. They are left unread on the server rather than marked
 * read behind the user's back; "Mark all read" clears them like the rest.
 */
export function NotificationBell() {
  const [inbox, setInbox] = useState<Inbox>({ unread: 0, notifications: [], live: new Set() });
  const [open, setOpen] = useState(false);
  /** Web Push on this device: null while unknown or unsupported. */
  const [push, setPush] = useState<"on" | "off" | null>(null);
  const [pushProblem, setPushProblem] = useState<string | null>(null);
  /** Why "Keep running" did not take: the workspace would hibernate as warned, so the user must know. */
  const [keepProblem, setKeepProblem] = useState<string | null>(null);
  const root = useRef<HTMLDivElement>(null);
  const button = useRef<HTMLButtonElement>(null);

  const load = () =>
    Promise.all([
      api<{ unread: number; notifications: Notification[] }>("/api/v1/notifications"),
      api<{ workspaces: Workspace[] }>("/api/v1/workspaces"),
    ])
      .then(([n, w]) =>
        setInbox({
          ...n,
          live: new Set(w.workspaces.filter((x) => x.state !== "destroyed").map((x) => x.id)),
        }),
      )
      .catch(() => {});

  useEffect(() => {
    const stopPresence = startPresence();
    if (pushSupported())
      void registerServiceWorker()
        .then(() => pushEnabled())
        .then((on) => setPush(on ? "on" : "off"));
    return stopPresence;
  }, []);

  const turnOnPush = async () => {
    setPushProblem(null);
    try {
      await enablePush();
      setPush("on");
    } catch (e) {
      setPushProblem(`Push not enabled: ${(e as Error).message}`);
    }
  };

  useEffect(() => {
    load();
    const unfollow = onNotification((n) => {
      load();
      if (document.hidden && "Notification" in window && Notification.permission === "granted") {
        new Notification(n.title, { body: n.body, tag: n.id });
      }
    });
    // Workspaces come and go (destroyed here or elsewhere): refresh on navigation and now and then.
    const t = setInterval(load, 15_000);
    addEventListener("hashchange", load);
    return () => {
      unfollow();
      clearInterval(t);
      removeEventListener("hashchange", load);
    };
  }, []);

  // A layout effect: attached as the feed renders. Preact runs plain effects after the next paint, and an
  // Escape pressed in between (right after opening) was lost and left the feed open.
  useLayoutEffect(() => {
    if (!open) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== "Escape") return;
      e.stopPropagation();
      setOpen(false);
      button.current?.focus();
    };
    const onPointer = (e: PointerEvent) => {
      if (root.current && !root.current.contains(e.target as Node)) setOpen(false);
    };
    addEventListener("keydown", onKey, true);
    addEventListener("pointerdown", onPointer);
    return () => {
      removeEventListener("keydown", onKey, true);
      removeEventListener("pointerdown", onPointer);
    };
  }, [open]);

  const destroyed = (n: Notification) => !inbox.live.has(n.workspaceId);
  // The server counts every unread row; those of destroyed workspaces (all listed first, unread first) are
  // taken out.
  const unread = Math.max(
    0,
    inbox.unread - inbox.notifications.filter((n) => !n.readAt && destroyed(n)).length,
  );

  const pick = async (n: Notification) => {
    await api(`/api/v1/notifications/${n.id}/read`, { method: "POST" }).catch(() => {});
    setOpen(false);
    load();
    if (n.sessionId) location.hash = href.terminal(n.sessionId);
    else location.hash = href.workspace(n.workspaceId);
  };

  /** The one-click answer to an autostop warning: the idle clock restarts, the warning is read. */
  const keepRunning = async (n: Notification) => {
    setKeepProblem(null);
    try {
      await api(`/api/v1/workspaces/${n.workspaceId}/keep-running`, { method: "POST" });
    } catch (err) {
      // The warning stays unread, with its button, for another try.
      setKeepProblem(`The workspace was not kept running: ${humanError(err)}`);
      return;
    }
    await api(`/api/v1/notifications/${n.id}/read`, { method: "POST" }).catch(() => {});
    load();
  };

  const markAllRead = async () => {
    await api("/api/v1/notifications/read-all", { method: "POST" }).catch(() => {});
    load();
  };

  const toggle = () => {
    setOpen(!open);
    if ("Notification" in window && Notification.permission === "default")
      void Notification.requestPermission();
  };

  return (
    <div class="bell" ref={root}>
      <button
        type="button"
        ref={button}
        class="icon-button"
        aria-expanded={open}
        aria-controls="notification-feed"
        aria-label={`notifications, ${unread} unread`}
        onClick={toggle}
      >
        <svg
          width="20"
          height="20"
          viewBox="0 0 24 24"
          aria-hidden="true"
          fill="none"
          stroke="currentColor"
          stroke-width="2"
          stroke-linecap="round"
          stroke-linejoin="round"
        >
          <path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9M13.7 21a2 2 0 0 1-3.4 0" />
        </svg>
        {unread > 0 && (
          <span class="count" aria-hidden="true">
            {unread}
          </span>
        )}
      </button>
      {open && (
        <section class="feed" id="notification-feed" aria-label="notification feed">
          <div class="feed-head">
            <strong>Notifications</strong>
            <button type="button" class="subtle" onClick={markAllRead} disabled={inbox.unread === 0}>
              Mark all read
            </button>
          </div>
          {push === "off" && (
            <div class="feed-push">
              <button type="button" class="subtle" onClick={turnOnPush}>
                Push to this device
              </button>
              <span class="muted">when Claude needs you and no Berth tab is in front</span>
            </div>
          )}
          {pushProblem && (
            <p class="error feed-push" role="alert">
              {pushProblem}
            </p>
          )}
          {keepProblem && (
            <p class="error feed-push" role="alert">
              {keepProblem}
            </p>
          )}
          <ul>
            {inbox.notifications.length === 0 && <li class="muted feed-empty">Nothing yet.</li>}
            {inbox.notifications.map((n) =>
              destroyed(n) ? (
                <li key={n.id} class="gone">
                  <div class="feed-item" aria-disabled="true">
                    <strong>{n.title}</strong>
                    <span>{n.body}</span>
                    <span class="muted">workspace destroyed · {ago(n.createdAt)}</span>
                  </div>
                </li>
              ) : (
                <li key={n.id} class={n.readAt ? "read" : "unread"}>
                  <button type="button" class="feed-item" onClick={() => pick(n)}>
                    <strong>
                      {!n.readAt && <span class="visually-hidden">unread: </span>}
                      {n.title}
                    </strong>
                    <span>{n.body}</span>
                    <span class="muted">
                      {n.sessionName ? `${n.sessionName} · ` : ""}
                      {ago(n.createdAt)}
                    </span>
                  </button>
                  {n.kind === "autostop_warning" && !n.readAt && (
                    <button type="button" class="feed-action" onClick={() => keepRunning(n)}>
                      Keep running
                    </button>
                  )}
                </li>
              ),
            )}
          </ul>
        </section>
      )}
    </div>
  );
}
