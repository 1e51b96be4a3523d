/**
 * Web Push through the authorization layer: a user's own subscriptions (one per browser and device) and
 * the presence of their Berth tabs; and the push sender (`system:push`) claiming a stored notification once
 * across replicas and reaching its recipient's subscriptions.
 */
import { and, eq, ne, sql } from "drizzle-orm";
import { Conflict, NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Access } from "./access.ts";
import type { PushSubscriptionRow } from "./rows.ts";
import { pushSubscriptions, users } from "./schema.ts";

/** Browsers and devices one user may subscribe: each push goes to all of them. */
export const MAX_PUSH_SUBSCRIPTIONS = 20;

export interface NewPushSubscription {
  endpoint: string;
  p256dh: string;
  auth: string;
  device: string | null;
}

/** A notification one replica claimed for push, with what the push needs. */
export interface ClaimedPush {
  id: string;
  userId: string;
  workspaceId: string;
  sessionId: string | null;
  sessionName: string | null;
  kind: string;
  title: string;
  body: string;
  /** A Berth tab of the recipient is visible and focused now: no push. */
  present: boolean;
  subscriptions: PushSubscriptionRow[];
}

export class PushStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /**
   * Stores the browser's subscription for the signed-in user. The endpoint is the browser's own capability:
   * seen again (a renewed key, another user signed in on that browser), it is updated and moves to them.
   */
  async subscribe(input: NewPushSubscription): Promise<PushSubscriptionRow> {
    this.#access.require("push.subscribe", "push subscription");
    const { userId } = this.#access.user("push subscription");
    // The user's row lock orders concurrent subscribes (run this in a transaction), so the count holds.
    await this.#access.db.select({ id: users.id }).from(users).where(eq(users.id, userId)).for("update");
    const [{ others } = { others: 0 }] = await this.#access.db
      .select({ others: sql<number>`count(*)::int` })
      .from(pushSubscriptions)
      .where(and(eq(pushSubscriptions.userId, userId), ne(pushSubscriptions.endpoint, input.endpoint)));
    if (others >= MAX_PUSH_SUBSCRIPTIONS)
      throw new Conflict(
        "push_subscription_limit",
        `a user has at most ${MAX_PUSH_SUBSCRIPTIONS} push subscriptions: delete one first`,
      );
    const [row] = await this.#access.db
      .insert(pushSubscriptions)
      .values({ ...input, userId })
      .onConflictDoUpdate({
        target: pushSubscriptions.endpoint,
        set: { userId, p256dh: input.p256dh, auth: input.auth, device: input.device },
      })
      .returning();
    return row!;
  }

  async listOwn(): Promise<PushSubscriptionRow[]> {
    this.#access.require("push.subscribe", "push subscription");
    const { userId } = this.#access.user("push subscription");
    return this.#access.db.select().from(pushSubscriptions).where(eq(pushSubscriptions.userId, userId));
  }

  /** Deletes one of the user's subscriptions; someone else's is NotFound. */
  async unsubscribe(id: string): Promise<void> {
    this.#access.require("push.subscribe", "push subscription");
    const { userId } = this.#access.user("push subscription");
    if (!isUuid(id)) throw new NotFound("push subscription");
    const gone = await this.#access.db
      .delete(pushSubscriptions)
      .where(and(eq(pushSubscriptions.id, id), eq(pushSubscriptions.userId, userId)))
      .returning({ id: pushSubscriptions.id });
    if (gone.length === 0) throw new NotFound("push subscription");
  }

  /** A Berth tab of the user is visible and focused until `until` (null: not any more). */
  async setPresence(until: Date | null): Promise<void> {
    this.#access.require("push.subscribe", "push subscription");
    const { userId } = this.#access.user("push subscription");
    await this.#access.db.update(users).set({ focusedUntil: until }).where(eq(users.id, userId));
  }

  /**
   * Takes a stored notification for push, once across replicas (the first to mark it wins), with its
   * recipient's presence at `now` and subscriptions. Null when it is not for push or already taken.
   */
  async claim(notificationId: string, now: Date): Promise<ClaimedPush | null> {
    this.#access.require("push.send", "notification");
    if (!isUuid(notificationId)) return null;
    const { rows } = await this.#access.db.execute<{
      id: string;
      user_id: string;
      workspace_id: string;
      session_id: string | null;
      session_name: string | null;
      kind: string;
      title: string;
      body: string;
      present: boolean;
    }>(sql`
      WITH claimed AS (
        UPDATE notifications SET pushed_at = ${now.toISOString()}::timestamptz
         WHERE id = ${notificationId} AND push AND pushed_at IS NULL
        RETURNING id, user_id, workspace_id, session_id, kind, title, body)
      SELECT c.*, s.name AS session_name,
             coalesce(u.focused_until > ${now.toISOString()}::timestamptz, false) AS present
        FROM claimed c JOIN users u ON u.id = c.user_id LEFT JOIN sessions s ON s.id = c.session_id`);
    const r = rows[0];
    if (!r) return null;
    const subscriptions = await this.#access.db
      .select()
      .from(pushSubscriptions)
      .where(eq(pushSubscriptions.userId, r.user_id));
    return {
      id: r.id,
      userId: r.user_id,
      workspaceId: r.workspace_id,
      sessionId: r.session_id,
      sessionName: r.session_name,
      kind: r.kind,
      title: r.title,
      body: r.body,
      present: r.present,
      subscriptions,
    };
  }

  /** The push service said the subscription is gone (404/410): forget it. */
  async forget(subscriptionId: string): Promise<void> {
    this.#access.require("push.send", "push subscription");
    await this.#access.db.delete(pushSubscriptions).where(eq(pushSubscriptions.id, subscriptionId));
  }

  async markSent(subscriptionId: string, at: Date): Promise<void> {
    this.#access.require("push.send", "push subscription");
    await this.#access.db
      .update(pushSubscriptions)
      .set({ lastSentAt: at })
      .where(eq(pushSubscriptions.id, subscriptionId));
  }
}
