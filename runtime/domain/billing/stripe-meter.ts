/**
 * The outbox of compute minutes to Stripe Billing Meters (DESIGN §8). `meter_events` rows are the outbox:
 * a drain claims due unsent rows in batches, makes sure the meter and each user's Stripe customer exist,
 * sends the minutes and records the outcome; failures wait for their next try with exponential backoff.
 * Each minute is sent with the identifier `<instance id>:<minute>`, the same on every try, and Stripe
 * deduplicates identifiers (24 h or more), so a minute whose answer was lost is sent again harmlessly
 * (v1 answers "already exists", which counts as delivered; the v2 stream accepts and drops it). No
 * idempotency key is set on purpose: Stripe replays a key's first answer, 500s included, for 24 h, which
 * would pin a minute that failed during an outage to that failure.
 *
 * Two senders: the v2 meter event stream (default: 100 events per call on a 15-minute session token) and
 * v1 `billing.meterEvents.create` (one call per event, validated synchronously). runtime/bench/billing.ts
 * measured them against the fake with a 100 ms round trip: v1 with 16 calls in flight falls behind what
 * 10,000 running workspaces accrue (167 events/s); the stream stays an order of magnitude ahead. One
 * replica drains at a time (the outbox lock).
 */
import type { Logger } from "../../platform/logger.ts";
import type { Metrics } from "../../platform/metrics.ts";
import { SYSTEM } from "../../store/actors.ts";
import type { BillingStore, DeliveryFailure } from "../../store/billing.ts";
import type { Store } from "../../store/store.ts";
import { createStripe, type Stripe } from "./stripe-client.ts";

export interface OutboxOptions {
  /** `v2`: the meter event stream (batches); `v1`: one `billing.meterEvents.create` per minute. */
  api: "v1" | "v2";
  /** Rows claimed per batch. */
  batchSize: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** How long a claimed row is held before another drain may retry it (a drain that died mid-batch). */
  leaseMs: number;
  /** Backoff after the n-th failed try: base * 2^(n-1), capped. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Batches per drain, so one drain does not run forever while minutes keep arriving. */
  maxBatches: number;
}

export const DEFAULT_OUTBOX: OutboxOptions = {
  api: "v2",
  batchSize: 500,
  concurrency: 16,
  leaseMs: 5 * 60_000,
  backoffBaseMs: 30_000,
  backoffMaxMs: 30 * 60_000,
  maxBatches: 40,
};

/** Stripe accepts meter events up to 35 days old; older ones are refused, so they are parked, not retried. */
const STRIPE_WINDOW_MS = 35 * 24 * 3600_000 - 3600_000;
const PARKED = new Date("9999-12-31T00:00:00Z");
/** The v2 stream takes up to 100 events per call. */
const STREAM_BATCH = 100;
/** A session token is renewed this long before Stripe says it expires. */
const SESSION_MARGIN_MS = 60_000;

export interface DrainReport {
  /** False: another replica holds the outbox. */
  ran: boolean;
  sent: number;
  /** Of `sent`: answered "already exists" (a previous try got through). */
  duplicates: number;
  failed: number;
  /** Too old for Stripe's window: kept, never sent (logged as an error). */
  expired: number;
  batches: number;
}

/** The identifier Stripe deduplicates a minute by: the meter_events unique key. */
export function meterIdentifier(instanceId: string, minute: Date): string {
  return `${instanceId}:${minute.toISOString().slice(0, 16)}Z`;
}

/** The voice meter's event name: voice seconds (`voice_usage`) are the outbox's second meter. */
export const VOICE_METER_EVENT_NAME = "berth_voice_seconds";

/** A claimed row of either meter, as Stripe is sent it. */
interface Outgoing {
  id: number;
  userId: string;
  stripeCustomerId: string | null;
  attempts: number;
  identifier: string;
  value: number;
  at: Date;
}

/** One meter of the outbox: its Stripe meter, where its rows are claimed from and reported to. */
interface MeterSource {
  eventName: string;
  displayName: string;
  table: "meter_events" | "voice_usage";
  claim(now: Date, limit: number, leaseMs: number): Promise<Outgoing[]>;
}

function isDuplicate(err: unknown): boolean {
  const e = err as { type?: string; message?: string } | null;
  return e?.type === "StripeInvalidRequestError" && /already exists with identifier/i.test(e.message ?? "");
}

export class MeterOutbox {
  readonly #billing: BillingStore;
  readonly #stripe: Stripe;
  readonly #meters: MeterSource[];
  readonly #log: Logger;
  readonly #clock: () => Date;
  readonly #options: OutboxOptions;
  readonly #streamClient: (token: string) => Stripe;
  readonly #metrics: Metrics | null;
  #session: { client: Stripe; expiresAt: number } | null = null;

  constructor(deps: {
    store: Store;
    stripe: Stripe;
    eventName: string;
    log: Logger;
    clock?: () => Date;
    options?: Partial<OutboxOptions>;
    /** The client that sends on a v2 session token; pass one on the same endpoint as `stripe`. */
    streamClient?: (token: string) => Stripe;
    metrics?: Metrics;
  }) {
    this.#metrics = deps.metrics ?? null;
    this.#streamClient = deps.streamClient ?? ((token) => createStripe(token));
    this.#billing = deps.store.as(SYSTEM.billing).billing;
    this.#stripe = deps.stripe;
    const billing = this.#billing;
    this.#meters = [
      {
        eventName: deps.eventName,
        displayName: "Berth compute minutes",
        table: "meter_events",
        claim: async (now, limit, lease) =>
          (await billing.claimUnsent(now, limit, lease)).map((e) => ({
            id: e.id,
            userId: e.userId,
            stripeCustomerId: e.stripeCustomerId,
            attempts: e.attempts,
            identifier: meterIdentifier(e.instanceId, e.minuteTs),
            value: e.quantity,
            at: e.minuteTs,
          })),
      },
      {
        eventName: VOICE_METER_EVENT_NAME,
        displayName: "Berth voice seconds",
        table: "voice_usage",
        claim: async (now, limit, lease) =>
          (await billing.claimUnsentVoice(now, limit, lease)).map((v) => ({
            id: v.id,
            userId: v.userId,
            stripeCustomerId: v.stripeCustomerId,
            attempts: v.attempts,
            identifier: `voice:${v.id}`,
            value: v.seconds,
            at: v.startedAt,
          })),
      },
    ];
    this.#log = deps.log;
    this.#clock = deps.clock ?? (() => new Date());
    this.#options = { ...DEFAULT_OUTBOX, ...deps.options };
  }

  async drain(): Promise<DrainReport> {
    const report: DrainReport = { ran: false, sent: 0, duplicates: 0, failed: 0, expired: 0, batches: 0 };
    report.ran = await this.#billing.withOutboxLock(async () => {
      for (const meter of this.#meters) {
        await this.#ensureMeter(meter);
        let batches = 0;
        while (batches < this.#options.maxBatches) {
          const batch = await meter.claim(this.#clock(), this.#options.batchSize, this.#options.leaseMs);
          if (batch.length === 0) break;
          batches++;
          await this.#deliver(meter, batch, report);
        }
        report.batches += batches;
      }
    });
    if (this.#metrics && report.ran) {
      this.#metrics.billingEventsSent.inc({ outcome: "accepted" }, report.sent - report.duplicates);
      this.#metrics.billingEventsSent.inc({ outcome: "duplicate" }, report.duplicates);
      this.#metrics.billingEventsFailed.inc(report.failed);
    }
    if (report.failed > 0) this.#log.warn({ ...report }, "some meter events could not be sent to Stripe yet");
    return report;
  }

  /** Creates a meter once: Stripe does not deduplicate meters by event name, so its id is stored. */
  async #ensureMeter(source: MeterSource): Promise<void> {
    if (await this.#billing.meterId(source.eventName)) return;
    let id: string | null = null;
    for await (const meter of this.#stripe.billing.meters.list({ limit: 100 })) {
      if (meter.event_name === source.eventName && meter.status === "active") {
        id = meter.id;
        break;
      }
    }
    if (!id) {
      const meter = await this.#stripe.billing.meters.create({
        display_name: source.displayName,
        event_name: source.eventName,
        default_aggregation: { formula: "sum" },
        customer_mapping: { type: "by_id", event_payload_key: "stripe_customer_id" },
        value_settings: { event_payload_key: "value" },
      });
      id = meter.id;
      this.#log.info({ meter: id, eventName: source.eventName }, "created the Stripe meter");
    }
    await this.#billing.saveMeterId(source.eventName, id);
  }

  async #deliver(meter: MeterSource, batch: Outgoing[], report: DrainReport): Promise<void> {
    const now = this.#clock();
    const sent: number[] = [];
    const failures: DeliveryFailure[] = [];
    const fail = (event: Outgoing, err: unknown) => {
      const delay = Math.min(
        this.#options.backoffBaseMs * 2 ** Math.max(0, event.attempts - 1),
        this.#options.backoffMaxMs,
      );
      // Spread retries a little (by id, so it is reproducible) so a recovered Stripe is not hit all at once.
      const spread = 1 + (event.id % 16) / 64;
      failures.push({
        id: event.id,
        error: (err as Error)?.message ?? String(err),
        notBefore: new Date(now.getTime() + Math.round(delay * spread)),
      });
    };

    const customers = await this.#customersFor(batch, fail);
    const queue = batch.filter((e) => {
      if (now.getTime() - e.at.getTime() > STRIPE_WINDOW_MS) {
        failures.push({ id: e.id, error: "outside Stripe's 35-day window", notBefore: PARKED });
        report.expired++;
        return false;
      }
      return customers.has(e.userId);
    });
    if (report.expired > 0) this.#log.error({ expired: report.expired }, "meter events too old to send");

    if (this.#options.api === "v2") await this.#sendStream(meter, queue, customers, sent, fail);
    else await this.#sendEach(meter, queue, customers, sent, fail, report);
    await this.#billing.reportDelivery(sent, this.#clock(), failures, meter.table);
    report.sent += sent.length;
    report.failed += failures.length - failures.filter((f) => f.notBefore === PARKED).length;
  }

  /** v1: one call per minute, `concurrency` in flight; "already exists" is a delivered minute. */
  async #sendEach(
    meter: MeterSource,
    queue: Outgoing[],
    customers: Map<string, string>,
    sent: number[],
    fail: (event: Outgoing, err: unknown) => void,
    report: DrainReport,
  ): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < queue.length) {
        const event = queue[next++]!;
        try {
          await this.#stripe.billing.meterEvents.create({
            event_name: meter.eventName,
            identifier: event.identifier,
            timestamp: Math.floor(event.at.getTime() / 1000),
            payload: { stripe_customer_id: customers.get(event.userId)!, value: String(event.value) },
          });
          sent.push(event.id);
        } catch (err) {
          if (isDuplicate(err)) {
            sent.push(event.id);
            report.duplicates++;
          } else {
            fail(event, err);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#options.concurrency, queue.length) }, worker));
  }

  /**
   * v2: batches of 100 on a session token, `concurrency` calls in flight (at most 8: a call carries 100).
   * A 202 means accepted: Stripe validates asynchronously and drops a repeated identifier. A call that
   * fails fails its whole batch (retried with backoff, same identifiers); an expired session is renewed
   * on the next call.
   */
  async #sendStream(
    meter: MeterSource,
    queue: Outgoing[],
    customers: Map<string, string>,
    sent: number[],
    fail: (event: Outgoing, err: unknown) => void,
  ): Promise<void> {
    const chunks: Outgoing[][] = [];
    for (let i = 0; i < queue.length; i += STREAM_BATCH) chunks.push(queue.slice(i, i + STREAM_BATCH));
    let next = 0;
    const worker = async () => {
      while (next < chunks.length) {
        const chunk = chunks[next++]!;
        try {
          const client = await this.#sessionClient();
          await client.v2.billing.meterEventStream.create({
            events: chunk.map((event) => ({
              event_name: meter.eventName,
              identifier: event.identifier,
              timestamp: event.at.toISOString(),
              payload: { stripe_customer_id: customers.get(event.userId)!, value: String(event.value) },
            })),
          });
          for (const event of chunk) sent.push(event.id);
        } catch (err) {
          if ((err as { type?: string })?.type === "TemporarySessionExpiredError") this.#session = null;
          for (const event of chunk) fail(event, err);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#options.concurrency, 8, chunks.length) }, worker));
  }

  /** The stream's client on a live session token (valid 15 minutes), created when none is. */
  async #sessionClient(): Promise<Stripe> {
    if (this.#session && this.#session.expiresAt - SESSION_MARGIN_MS > Date.now())
      return this.#session.client;
    const session = await this.#stripe.v2.billing.meterEventSession.create();
    this.#session = {
      client: this.#streamClient(session.authentication_token),
      expiresAt: Date.parse(session.expires_at),
    };
    return this.#session.client;
  }

  /**
   * Each batch user's Stripe customer, created the first time one of their minutes is sent. A user whose
   * customer cannot be created now has their minutes failed (they retry with backoff).
   */
  async #customersFor(
    batch: Outgoing[],
    fail: (event: Outgoing, err: unknown) => void,
  ): Promise<Map<string, string>> {
    const customers = new Map<string, string>();
    const missing = new Set<string>();
    for (const e of batch) {
      if (e.stripeCustomerId) customers.set(e.userId, e.stripeCustomerId);
      else missing.add(e.userId);
    }
    for (const userId of missing) {
      try {
        const email = await this.#billing.userEmail(userId);
        const customer = await this.#stripe.customers.create({
          ...(email ? { email } : {}),
          metadata: { berth_user_id: userId },
        });
        customers.set(userId, await this.#billing.setStripeCustomer(userId, customer.id));
      } catch (err) {
        for (const e of batch) if (e.userId === userId) fail(e, err);
      }
    }
    return customers;
  }
}
