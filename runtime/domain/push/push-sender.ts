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

/**
 * The most a push's JSON may take: a push service need accept no more than 4096 octets (RFC 8030 §7.2; FCM
 * answers 413 beyond), and aes128gcm adds an 86-byte header, a 16-byte tag and a 1-byte delimiter.
 */
export const MAX_PUSH_PAYLOAD_BYTES = 4096 - 86 - 16 - 1;
/** The title's share of it, so a long title still leaves room for the body. */
const MAX_PUSH_TITLE_BYTES = 512;

const jsonBytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v));

/** `text`, or its longest prefix (whole code points) with an ellipsis for which `fits` holds. */
function clip(text: string, fits: (t: string) => boolean): string {
  if (fits(text)) return text;
  const chars = [...text];
  let lo = 0;
  let hi = chars.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (fits(`${chars.slice(0, mid).join("")}…`)) lo = mid;
    else hi = mid - 1;
  }
  return `${chars.slice(0, lo).join("")}…`;
}

export function pushMessage(n: ClaimedPush): PushMessage {
  const message: PushMessage = {
    title: clip(n.title, (t) => jsonBytes(t) <= MAX_PUSH_TITLE_BYTES),
    body: n.sessionName ? [n.sessionName, n.body].filter(Boolean).join(": ") : n.body,
    kind: n.kind,
    tag: n.sessionId ? `session-${n.sessionId}` : `workspace-${n.workspaceId}`,
    url: n.sessionId ? `/#/t/${n.sessionId}` : `/#/w/${n.workspaceId}`,
  };
  message.body = clip(message.body, (b) => jsonBytes({ ...message, body: b }) <= MAX_PUSH_PAYLOAD_BYTES);
  return message;
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
        this.#log.warn({ err, notificationId: id }, "web push failed"),
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
