/**
 * Web Push delivery: every stored notification worth a push (store/push.ts `claim`, once across replicas)
 * goes to each of its recipient's subscriptions, encrypted per RFC 8291 and signed with VAPID (RFC 8292)
 * by the maintained `web-push` library, unless a Berth tab of theirs is visible and focused right then.
 * Pushes for one session share a tag (the browser replaces the previous one) and a Topic (the push service
 * replaces an undelivered one); clicking opens that session's terminal. A 404/410 from the push service
 * means the subscription is gone: it is deleted.
 */
import type { Agent } from "node:https";
import webpush from "web-push";
import type { Logger } from "../../platform/logger.ts";
import type { VapidKeys } from "../../platform/vapid.ts";
import { NOTIFICATION_CHANNEL } from "../../store/channels.ts";
import type { PgListener } from "../../store/listener.ts";
import type { ClaimedPush } from "../../store/push.ts";
import type { AuthorizedStore } from "../../store/store.ts";

/** What the service worker receives (runtime/web/public/sw.js shows it). */
export interface PushMessage {
  title: string;
  body: string;
  kind: string;
  /** Replaces the previous notification of the same session (or workspace). */
  tag: string;
  /** Where a click goes: the session's terminal, else the workspace. */
  url: string;
}

/** How long a push may wait at the push service, and how urgently it is delivered (RFC 8030 §5). */
export function deliveryFor(kind: string): { TTL: number; urgency: "high" | "normal" | "low" } {
  switch (kind) {
    case "autostop_warning":
      return { TTL: 5 * 60, urgency: "high" };
    case "permission_prompt":
    case "elicitation_dialog":
    case "idle_prompt":
    case "stop_failure":
      return { TTL: 60 * 60, urgency: "high" };
    default:
      return { TTL: 60 * 60, urgency: "normal" };
  }
}

export function pushMessage(n: ClaimedPush): PushMessage {
  return {
    title: n.title,
    body: n.sessionName ? [n.sessionName, n.body].filter(Boolean).join(": ") : n.body,
    kind: n.kind,
    tag: n.sessionId ? `session-${n.sessionId}` : `workspace-${n.workspaceId}`,
    url: n.sessionId ? `/#/t/${n.sessionId}` : `/#/w/${n.workspaceId}`,
  };
}

export type PushOutcome = "sent" | "present" | "skipped";

export class PushSender {
  readonly #scope: AuthorizedStore;
  readonly #vapid: VapidKeys;
  readonly #log: Logger;
  readonly #agent: Agent | undefined;
  readonly #now: () => Date;
  #inFlight = new Set<Promise<unknown>>();

  constructor(deps: {
    /** The store as `system:push`. */
    scope: AuthorizedStore;
    vapid: VapidKeys;
    log: Logger;
    /** Tests: trust a local push service's certificate. */
    agent?: Agent;
    now?: () => Date;
  }) {
    this.#scope = deps.scope;
    this.#vapid = deps.vapid;
    this.#log = deps.log;
    this.#agent = deps.agent;
    this.#now = deps.now ?? (() => new Date());
  }

  /** Follows stored notifications (every replica listens; the claim makes each push go out once). */
  follow(listener: PgListener): Promise<() => void> {
    return listener.subscribe(NOTIFICATION_CHANNEL, (payload) => {
      const id = payload.split(":")[1];
      if (!id) return;
      const p = this.deliver(id).catch((err: unknown) =>
        this.#log.warn({ err: String(err), notificationId: id }, "web push failed"),
      );
      this.#inFlight.add(p);
      void p.finally(() => this.#inFlight.delete(p));
    });
  }

  /** Pushes in progress finish (shutdown, tests). */
  async settle(): Promise<void> {
    while (this.#inFlight.size) await Promise.allSettled([...this.#inFlight]);
  }

  async deliver(notificationId: string): Promise<PushOutcome> {
    const claimed = await this.#scope.push.claim(notificationId, this.#now());
    if (!claimed) return "skipped";
    if (claimed.present) return "present";
    const body = JSON.stringify(pushMessage(claimed));
    const { TTL, urgency } = deliveryFor(claimed.kind);
    // RFC 8030 Topic: at most 32 base64url characters; a uuid without dashes is exactly that.
    const topic = (claimed.sessionId ?? claimed.workspaceId).replaceAll("-", "");
    for (const sub of claimed.subscriptions) {
      try {
        await webpush.sendNotification(
          { endpoint: sub.endpoint, keys: { p256dh: sub.p256dh, auth: sub.auth } },
          body,
          {
            vapidDetails: this.#vapid,
            TTL,
            urgency,
            topic,
            timeout: 10_000,
            ...(this.#agent ? { agent: this.#agent } : {}),
          },
        );
        await this.#scope.push.markSent(sub.id, this.#now());
      } catch (err) {
        const status = (err as { statusCode?: number }).statusCode;
        if (status === 404 || status === 410) {
          await this.#scope.push.forget(sub.id);
          this.#log.info({ subscriptionId: sub.id, status }, "push subscription expired; deleted");
        } else this.#log.warn({ subscriptionId: sub.id, status, err: String(err) }, "push not delivered");
      }
    }
    return "sent";
  }
}
