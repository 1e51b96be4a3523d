/**
 * Stripe's webhooks: the signature is verified with the endpoint's signing secret over the raw body
 * (stripe-node's `constructEvent`, which also refuses a timestamp older than its tolerance: a replayed
 * request), and each event is applied once, by event id (store/billing.ts). Subscription events set the
 * user's subscription state and, when the subscription names a configured plan (metadata `berth_plan`, or
 * the price's lookup key), their plan; a deleted subscription returns the user to the default plan.
 */
import Stripe from "stripe";
import { Invalid } from "../../platform/errors.ts";
import type { Logger } from "../../platform/logger.ts";
import { SYSTEM } from "../../store/actors.ts";
import type { BillingStore } from "../../store/billing.ts";
import type { Store } from "../../store/store.ts";
import type { Plans } from "./plans.ts";

export interface WebhookOutcome {
  /** False: this event id was applied before (a redelivery). */
  applied: boolean;
  type: string;
}

export class StripeWebhooks {
  readonly #billing: BillingStore;
  readonly #secret: string;
  readonly #plans: Plans;
  readonly #log: Logger;

  constructor(deps: { store: Store; secret: string; plans: Plans; log: Logger }) {
    this.#billing = deps.store.as(SYSTEM.billing).billing;
    this.#secret = deps.secret;
    this.#plans = deps.plans;
    this.#log = deps.log;
  }

  async handle(rawBody: Buffer, signature: string | undefined): Promise<WebhookOutcome> {
    let event: Stripe.Event;
    try {
      event = Stripe.webhooks.constructEvent(rawBody, signature ?? "", this.#secret);
    } catch {
      throw new Invalid("invalid_signature", "the Stripe-Signature header does not verify this body");
    }
    if (
      event.type === "customer.subscription.created" ||
      event.type === "customer.subscription.updated" ||
      event.type === "customer.subscription.deleted"
    ) {
      const sub = event.data.object;
      const customerId = typeof sub.customer === "string" ? sub.customer : sub.customer.id;
      const named = sub.metadata?.berth_plan ?? sub.items?.data?.[0]?.price?.lookup_key ?? null;
      const plan =
        event.type === "customer.subscription.deleted"
          ? { reset: true as const }
          : named && this.#plans.has(named)
            ? named
            : null;
      const applied = await this.#billing.applySubscription({
        eventId: event.id,
        eventType: event.type,
        eventCreated: new Date(event.created * 1000),
        customerId,
        subscriptionId: sub.id,
        status: event.type === "customer.subscription.deleted" ? "canceled" : sub.status,
        plan,
      });
      this.#log.info({ event: event.id, type: event.type, applied }, "stripe webhook");
      return { applied, type: event.type };
    }
    return { applied: await this.#billing.recordWebhookEvent(event.id, event.type), type: event.type };
  }
}
