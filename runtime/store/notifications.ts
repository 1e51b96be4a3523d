/**
 * "Claude needs you": a user's inbox through the authorization layer (a notification is its recipient's),
 * and the agent storing new ones for its workspace's owner.
 */
import { and, desc, eq, isNull, sql } from "drizzle-orm";
import { NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Access } from "./access.ts";
import { NOTIFICATION_CHANNEL } from "./channels.ts";
import type { NotificationRow } from "./rows.ts";
import { notifications, sessions, workspaces } from "./schema.ts";

export interface NewNotification {
  sessionId: string | null;
  kind: string;
  title: string;
  body: string;
  /** Repeats of one event (hook and terminal sequence, a resend) share this key and are stored once. */
  dedupeKey: string;
  createdAt: Date;
  /** Worth a Web Push to the recipient (runtime/domain/push decides what is). */
  push?: boolean;
}

export class NotificationStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /** Unread first, then newest first, with the name of the session each came from. */
  async inbox(limit: number): Promise<Array<{ notification: NotificationRow; sessionName: string | null }>> {
    const mine = this.#recipient("notification.read");
    return this.#access.db
      .select({ notification: notifications, sessionName: sessions.name })
      .from(notifications)
      .leftJoin(sessions, eq(sessions.id, notifications.sessionId))
      .where(mine)
      .orderBy(sql`${notifications.readAt} IS NOT NULL`, desc(notifications.createdAt))
      .limit(limit);
  }

  async unreadCount(): Promise<number> {
    const mine = this.#recipient("notification.read");
    const [{ unread } = { unread: 0 }] = await this.#access.db
      .select({ unread: sql<number>`count(*)::int` })
      .from(notifications)
      .where(and(mine, isNull(notifications.readAt)));
    return unread;
  }

  /** One of the user's notifications, or null. */
  async find(id: string): Promise<NotificationRow | null> {
    const mine = this.#recipient("notification.read");
    if (!isUuid(id)) return null;
    const [row] = await this.#access.db
      .select()
      .from(notifications)
      .where(and(eq(notifications.id, id), mine));
    return row ?? null;
  }

  /** Marks one read (keeping the first read time). */
  async markRead(id: string): Promise<NotificationRow> {
    const mine = this.#recipient("notification.write");
    if (!isUuid(id)) throw new NotFound("notification");
    const [row] = await this.#access.db
      .update(notifications)
      .set({ readAt: sql`coalesce(${notifications.readAt}, now())` })
      .where(and(eq(notifications.id, id), mine))
      .returning();
    if (!row) throw new NotFound("notification");
    return row;
  }

  async markAllRead(): Promise<void> {
    const mine = this.#recipient("notification.write");
    await this.#access.db
      .update(notifications)
      .set({ readAt: new Date() })
      .where(and(mine, isNull(notifications.readAt)));
  }

  /**
   * Stores a notification from the agent for its workspace's owner, once per dedupe key, and announces it
   * (`<user id>:<notification id>`, at commit) so the user's feeds fetch exactly the new row. Its id, or
   * null for a duplicate.
   */
  async createForOwner(notification: NewNotification): Promise<string | null> {
    this.#access.require("notification.create", "notification");
    const { workspaceId } = this.#access.agent("notification");
    const [workspace] = await this.#access.db
      .select({ ownerId: workspaces.ownerId })
      .from(workspaces)
      .where(eq(workspaces.id, workspaceId));
    if (!workspace) throw new NotFound("workspace");
    const [inserted] = await this.#access.db
      .insert(notifications)
      .values({ ...notification, userId: workspace.ownerId, workspaceId })
      .onConflictDoNothing({ target: [notifications.workspaceId, notifications.dedupeKey] })
      .returning({ id: notifications.id });
    if (!inserted) return null;
    await this.#access.db.execute(
      sql`SELECT pg_notify(${NOTIFICATION_CHANNEL}, ${`${workspace.ownerId}:${inserted.id}`})`,
    );
    return inserted.id;
  }

  /** A notification belongs to the user it is for: only they read or mark it. */
  #recipient(right: "notification.read" | "notification.write") {
    this.#access.require(right, "notification");
    return eq(notifications.userId, this.#access.user("notification").userId);
  }
}
