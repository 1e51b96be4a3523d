/** "Claude needs you": a user's inbox, marking read, and following new notifications as they are stored. */
import { NOTIFICATION_CHANNEL } from "../../store/channels.ts";
import type { PgListener } from "../../store/listener.ts";
import type { NotificationRow } from "../../store/rows.ts";
import type { AuthorizedStore } from "../../store/store.ts";

export interface Inbox {
  unread: number;
  notifications: Array<{ notification: NotificationRow; sessionName: string | null }>;
}

export const INBOX_SIZE = 100;

/** The newest notifications, unread first, and how many are unread. */
export async function readInbox(scope: AuthorizedStore): Promise<Inbox> {
  const notifications = await scope.notifications.inbox(INBOX_SIZE);
  const unread = await scope.notifications.unreadCount();
  return { unread, notifications };
}

/**
 * Calls `onNew` with each notification of the scope's user as it is stored (NOTIFY, then a read through
 * the scope, so only the user's own rows ever arrive). Returns the unsubscribe function.
 */
export async function followNotifications(
  scope: AuthorizedStore,
  listener: PgListener,
  onNew: (notification: NotificationRow) => void,
): Promise<() => void> {
  const userId = scope.actor.kind === "user" ? scope.actor.userId : null;
  return listener.subscribe(NOTIFICATION_CHANNEL, async (payload) => {
    // Payload `<user id>:<notification id>`: skip other users' without a query.
    const [recipient, id] = payload.split(":");
    if (recipient !== userId || !id) return;
    const row = await scope.notifications.find(id);
    if (row) onNew(row);
  });
}
