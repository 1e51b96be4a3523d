/**
 * Billing's rows: the metering tick that turns running intervals into `meter_events`, the outbox those
 * rows are delivered to Stripe from, users' billing accounts (plan, Stripe customer, subscription), the
 * meters created in Stripe, applied webhook events, and usage read back per user and workspace.
 *
 * Every statement here is set-based: a tick, a claim, a delivery report or a standing check is one
 * statement whatever the number of workspaces, so the jobs' cost per tick does not grow by a query per
 * workspace (runtime/bench/billing.ts counts them).
 */
import { sql } from "drizzle-orm";
import type pg from "pg";
import { NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Access } from "./access.ts";
import { NOTIFICATION_CHANNEL } from "./channels.ts";

/** Both replicas' metering ticks and outbox drains take these, so one replica does each at a time. */
const METER_LOCK = "billing:meter-tick";
const OUTBOX_LOCK = "billing:outbox";

/** What one metering statement did. */
export interface MeterPass {
  /** False: another replica holds the tick; it meters the same minutes. */
  ran: boolean;
  /** meter_events rows written (a minute already there is skipped by the unique key, not counted). */
  inserted: number;
  /** Instances whose cursor moved. */
  advanced: number;
  /** Some instance had more owed minutes than one pass meters (catching up after downtime): run again. */
  more: boolean;
}

/** An unsent minute, claimed for delivery, with what Stripe needs. */
export interface ClaimedEvent {
  id: number;
  instanceId: string;
  minuteTs: Date;
  quantity: number;
  attempts: number;
  userId: string;
  stripeCustomerId: string | null;
}

/** An undelivered voice-usage row, claimed for delivery. */
export interface ClaimedVoice {
  id: number;
  userId: string;
  seconds: number;
  startedAt: Date;
  attempts: number;
  stripeCustomerId: string | null;
}

export interface DeliveryFailure {
  id: number;
  error: string;
  /** When to try again (the sender's backoff). */
  notBefore: Date;
}

export interface BillingAccount {
  userId: string;
  plan: string | null;
  stripeCustomerId: string | null;
  subscriptionId: string | null;
  subscriptionStatus: string | null;
}

/** A user with a running workspace, their plan and their minutes so far this period. */
export interface RunningStanding {
  userId: string;
  plan: string | null;
  minutes: number;
  /** Their workspaces with an open instance. */
  workspaceIds: string[];
}

export interface WorkspaceMinutes {
  workspaceId: string;
  name: string;
  minutes: number;
}

export interface DayMinutes {
  /** YYYY-MM-DD, UTC. */
  day: string;
  minutes: number;
}

export interface SubscriptionChange {
  eventId: string;
  eventType: string;
  eventCreated: Date;
  customerId: string;
  subscriptionId: string;
  status: string;
  /** The plan the subscription names; null leaves the plan as it is, `reset` returns to the default. */
  plan: string | null | { reset: true };
}

export class BillingStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  get #pool(): pg.Pool {
    this.#access.require("billing.meter", "billing");
    return this.#access.pool;
  }

  /**
   * Runs `fn` on a connection of its own (transactions, session locks). A connection that dies while held
   * reports on the client, not the pool: the query in flight fails, and the client is discarded on release
   * instead of crashing the process or going back to the pool.
   */
  async #withClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let failed: Error | undefined;
    const onError = (err: Error) => {
      failed = err;
    };
    client.on("error", onError);
    try {
      return await fn(client);
    } catch (err) {
      failed ??= err as Error;
      throw err;
    } finally {
      client.off("error", onError);
      client.release(failed);
    }
  }

  /**
   * One metering pass at `now` (null: the database's clock), in one transaction under the tick lock. The
   * rule (README "Billing"): a minute [m, m+1) is owed for an instance when its running interval
   * [started_at, stopped_at) overlaps it for any positive time, so a partial first and a partial last minute
   * each count as a whole minute; a minute is metered only once it has ended (m+1 <= now). Each instance's
   * `metered_through` cursor says where the last pass stopped; minutes are generated from the cursor to the
   * end of the last completed minute, at most `maxMinutes` per instance per pass, and inserted with ON
   * CONFLICT DO NOTHING on (instance, minute), so whatever runs a pass again (a second replica, a retried
   * job, a cursor that somehow lags) writes no minute twice; the insert and the cursor commit together.
   * The instances are locked (FOR NO KEY UPDATE) so a stop committing meanwhile is read with its stop time.
   */
  async meterPass(now: Date | null, maxMinutes: number): Promise<MeterPass> {
    return this.#withClient(async (client) => {
      try {
        await client.query("BEGIN");
        const { rows: lock } = await client.query<{ ok: boolean }>(
          "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS ok",
          [METER_LOCK],
        );
        if (!lock[0]!.ok) {
          await client.query("ROLLBACK");
          return { ran: false, inserted: 0, advanced: 0, more: false };
        }
        const { rows } = await client.query<{ inserted: string; advanced: string; more: boolean }>(
          `WITH clock AS (SELECT date_trunc('minute', coalesce($1::timestamptz, now())) AS upto),
         open AS (
           SELECT i.id, i.stopped_at,
             coalesce(i.metered_through, date_trunc('minute', i.started_at)) AS from_m,
             CASE
               WHEN i.stopped_at IS NULL THEN 'infinity'::timestamptz
               WHEN i.stopped_at = i.started_at THEN date_trunc('minute', i.started_at)
               WHEN i.stopped_at = date_trunc('minute', i.stopped_at) THEN i.stopped_at
               ELSE date_trunc('minute', i.stopped_at) + interval '1 minute'
             END AS end_m
           FROM workspace_instances i
           WHERE i.stopped_at IS NULL OR i.metered_through IS NULL OR i.metered_through < i.stopped_at
           FOR NO KEY UPDATE
         ),
         due AS (
           SELECT o.id, o.stopped_at, o.from_m, o.end_m,
             greatest(o.from_m, least(o.end_m, c.upto, o.from_m + $2::int * interval '1 minute')) AS to_m,
             least(o.end_m, c.upto) AS goal
           FROM open o, clock c
         ),
         ins AS (
           INSERT INTO meter_events (workspace_instance_id, minute_ts, not_before)
           SELECT d.id, m, m + interval '1 minute' FROM due d,
             generate_series(d.from_m, d.to_m - interval '1 minute', interval '1 minute') AS m
           WHERE d.to_m > d.from_m
           ON CONFLICT (workspace_instance_id, minute_ts) DO NOTHING
           RETURNING 1
         ),
         adv AS (
           UPDATE workspace_instances i
           SET metered_through = CASE WHEN d.to_m >= d.end_m THEN greatest(d.to_m, d.stopped_at) ELSE d.to_m END
           FROM due d
           WHERE i.id = d.id AND (d.to_m > d.from_m OR d.to_m >= d.end_m)
           RETURNING 1
         )
         SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM adv) AS advanced,
                coalesce((SELECT bool_or(to_m < goal) FROM due), false) AS more`,
          [now, maxMinutes],
        );
        await client.query("COMMIT");
        const r = rows[0]!;
        return { ran: true, inserted: Number(r.inserted), advanced: Number(r.advanced), more: r.more };
      } catch (err) {
        await client.query("ROLLBACK").catch(() => {});
        throw err;
      }
    });
  }

  /**
   * Runs `fn` holding the outbox lock (a session advisory lock on one connection), or returns false at once
   * when another replica is draining.
   */
  async withOutboxLock(fn: () => Promise<void>): Promise<boolean> {
    return this.#withClient(async (client) => {
      const { rows } = await client.query<{ ok: boolean }>(
        "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok",
        [OUTBOX_LOCK],
      );
      if (!rows[0]!.ok) return false;
      try {
        await fn();
      } finally {
        await client.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [OUTBOX_LOCK]);
      }
      return true;
    });
  }

  /**
   * Claims up to `limit` unsent minutes due at `now`, oldest first: their next try moves `leaseMs` ahead,
   * so a sender that dies mid-batch leaves them to be retried (with the same identifier) once it lapses.
   */
  async claimUnsent(now: Date, limit: number, leaseMs: number): Promise<ClaimedEvent[]> {
    const { rows } = await this.#pool.query<{
      id: string;
      workspace_instance_id: string;
      minute_ts: Date;
      quantity: number;
      attempts: number;
      owner_id: string;
      stripe_customer_id: string | null;
    }>(
      `WITH picked AS (
         SELECT id FROM meter_events
         WHERE sent_at IS NULL AND not_before <= $1
         ORDER BY not_before, id
         LIMIT $2 FOR UPDATE SKIP LOCKED
       ),
       claimed AS (
         UPDATE meter_events e SET attempts = e.attempts + 1,
           not_before = $1::timestamptz + $3::int * interval '1 millisecond'
         FROM picked WHERE e.id = picked.id
         RETURNING e.id, e.workspace_instance_id, e.minute_ts, e.quantity, e.attempts
       )
       SELECT c.*, w.owner_id, a.stripe_customer_id
       FROM claimed c
       JOIN workspace_instances i ON i.id = c.workspace_instance_id
       JOIN workspaces w ON w.id = i.workspace_id
       LEFT JOIN billing_accounts a ON a.user_id = w.owner_id
       ORDER BY c.id`,
      [now, limit, leaseMs],
    );
    return rows.map((r) => ({
      id: Number(r.id),
      instanceId: r.workspace_instance_id,
      minuteTs: r.minute_ts,
      quantity: r.quantity,
      attempts: r.attempts,
      userId: r.owner_id,
      stripeCustomerId: r.stripe_customer_id,
    }));
  }

  /**
   * Claims up to `limit` undelivered voice-usage rows (seconds > 0) due at `now`, like `claimUnsent`: the
   * second meter of the same outbox.
   */
  async claimUnsentVoice(now: Date, limit: number, leaseMs: number): Promise<ClaimedVoice[]> {
    const { rows } = await this.#pool.query<{
      id: string;
      user_id: string;
      seconds: number;
      started_at: Date;
      attempts: number;
      stripe_customer_id: string | null;
    }>(
      `WITH picked AS (
         SELECT id FROM voice_usage
         WHERE sent_at IS NULL AND not_before <= $1 AND seconds > 0
         ORDER BY not_before, id
         LIMIT $2 FOR UPDATE SKIP LOCKED
       ),
       claimed AS (
         UPDATE voice_usage v SET attempts = v.attempts + 1,
           not_before = $1::timestamptz + $3::int * interval '1 millisecond'
         FROM picked WHERE v.id = picked.id
         RETURNING v.id, v.user_id, v.seconds, v.started_at, v.attempts
       )
       SELECT c.*, a.stripe_customer_id
       FROM claimed c LEFT JOIN billing_accounts a ON a.user_id = c.user_id
       ORDER BY c.id`,
      [now, limit, leaseMs],
    );
    return rows.map((r) => ({
      id: Number(r.id),
      userId: r.user_id,
      seconds: r.seconds,
      startedAt: r.started_at,
      attempts: r.attempts,
      stripeCustomerId: r.stripe_customer_id,
    }));
  }

  /**
   * Records a batch's outcome: delivered rows are sent, failed ones wait for their next try. `table` is the
   * outbox the rows came from.
   */
  async reportDelivery(
    sentIds: number[],
    sentAt: Date,
    failures: DeliveryFailure[],
    table: "meter_events" | "voice_usage" = "meter_events",
  ): Promise<void> {
    if (sentIds.length > 0) {
      await this.#pool.query(
        `UPDATE ${table} SET sent_at = $2, last_error = NULL WHERE id = ANY($1::bigint[]) AND sent_at IS NULL`,
        [sentIds, sentAt],
      );
    }
    if (failures.length > 0) {
      await this.#pool.query(
        `UPDATE ${table} e SET last_error = left(v.error, 500), not_before = v.not_before
         FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS v(id, error, not_before)
         WHERE e.id = v.id AND e.sent_at IS NULL`,
        [failures.map((f) => f.id), failures.map((f) => f.error), failures.map((f) => f.notBefore)],
      );
    }
  }

  /** How many minutes wait for delivery, and the oldest's minute (operators' and the bench's view). */
  async backlog(): Promise<{ unsent: number; oldest: Date | null }> {
    const { rows } = await this.#pool.query<{ n: string; oldest: Date | null }>(
      "SELECT count(*) AS n, min(minute_ts) AS oldest FROM meter_events WHERE sent_at IS NULL",
    );
    return { unsent: Number(rows[0]!.n), oldest: rows[0]!.oldest };
  }

  /**
   * How many minutes wait for delivery: /metrics' backlog gauge, read at every scrape by the `metrics`
   * actor, which may read this count and nothing else of billing. Only the count, so Postgres answers from
   * the partial unsent index alone (an index-only scan); `backlog()`'s oldest minute needs every row.
   */
  async unsentCount(): Promise<number> {
    this.#access.require("billing.backlog", "billing");
    const { rows } = await this.#access.pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM meter_events WHERE sent_at IS NULL",
    );
    return Number(rows[0]!.n);
  }

  /** The email Stripe's customer record is created with (null when the identity provider gave none). */
  async userEmail(userId: string): Promise<string | null> {
    const { rows } = await this.#pool.query<{ email: string | null }>(
      "SELECT email FROM users WHERE id = $1",
      [userId],
    );
    return rows[0]?.email ?? null;
  }

  /** Stores a user's Stripe customer; the one already stored wins (its id is returned). */
  async setStripeCustomer(userId: string, customerId: string): Promise<string> {
    const { rows } = await this.#pool.query<{ stripe_customer_id: string }>(
      `INSERT INTO billing_accounts (user_id, stripe_customer_id) VALUES ($1, $2)
       ON CONFLICT (user_id) DO UPDATE
         SET stripe_customer_id = coalesce(billing_accounts.stripe_customer_id, EXCLUDED.stripe_customer_id),
             updated_at = now()
       RETURNING stripe_customer_id`,
      [userId, customerId],
    );
    return rows[0]!.stripe_customer_id;
  }

  async meterId(eventName: string): Promise<string | null> {
    const { rows } = await this.#pool.query<{ stripe_meter_id: string }>(
      "SELECT stripe_meter_id FROM billing_meters WHERE event_name = $1",
      [eventName],
    );
    return rows[0]?.stripe_meter_id ?? null;
  }

  async saveMeterId(eventName: string, meterId: string): Promise<void> {
    await this.#pool.query(
      "INSERT INTO billing_meters (event_name, stripe_meter_id) VALUES ($1, $2) ON CONFLICT (event_name) DO NOTHING",
      [eventName, meterId],
    );
  }

  /**
   * Applies a subscription event once: the event id is recorded in the same transaction as the change, so a
   * redelivered event changes nothing. An event older than the one last applied for the customer, or the
   * deletion of a subscription other than the account's current one, only records its id. False when the
   * event id had been applied before.
   */
  async applySubscription(change: SubscriptionChange): Promise<boolean> {
    return this.#withClient(async (client) => {
      try {
        await client.query("BEGIN");
        const { rowCount } = await client.query(
          "INSERT INTO stripe_webhook_events (id, type) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
          [change.eventId, change.eventType],
        );
        if (rowCount === 0) {
          await client.query("ROLLBACK");
          return false;
        }
        const reset = typeof change.plan === "object" && change.plan !== null;
        await client.query(
          `UPDATE billing_accounts SET subscription_id = $2, subscription_status = $3,
           plan = CASE WHEN $5::boolean THEN NULL ELSE coalesce($4, plan) END,
           subscription_event_at = $6, updated_at = now()
         WHERE stripe_customer_id = $1
           AND (subscription_event_at IS NULL OR subscription_event_at <= $6)
           AND (NOT $7::boolean OR subscription_id IS NULL OR subscription_id = $2)`,
          [
            change.customerId,
            change.subscriptionId,
            change.status,
            reset ? null : change.plan,
            reset,
            change.eventCreated,
            // A customer may have several subscriptions: the deletion of one that is no longer the account's
            // (replaced by a newer one) must not cancel the current one nor reset its plan.
            change.eventType === "customer.subscription.deleted",
          ],
        );
        await client.query("COMMIT");
        return true;
      } catch (err) {
        await client.query("ROLLBACK").catch(() => {});
        throw err;
      }
    });
  }

  /** Records an event that changes nothing here, so its redelivery is recognised too. */
  async recordWebhookEvent(eventId: string, eventType: string): Promise<boolean> {
    const { rowCount } = await this.#pool.query(
      "INSERT INTO stripe_webhook_events (id, type) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
      [eventId, eventType],
    );
    return (rowCount ?? 0) > 0;
  }

  /** Users with a running workspace, their plan and their minutes since `periodStart`: one statement. */
  async runningStandings(periodStart: Date): Promise<RunningStanding[]> {
    const { rows } = await this.#pool.query<{
      owner_id: string;
      plan: string | null;
      minutes: string;
      workspace_ids: string[];
    }>(
      `WITH running AS (
         SELECT w.owner_id, array_agg(DISTINCT w.id) AS workspace_ids
         FROM workspace_instances i JOIN workspaces w ON w.id = i.workspace_id
         WHERE i.stopped_at IS NULL AND w.state IN ('starting','ready','unhealthy','waking','provisioning')
         GROUP BY w.owner_id
       )
       SELECT r.owner_id, a.plan, r.workspace_ids,
         (SELECT coalesce(sum(e.quantity), 0) FROM workspaces w2
            JOIN workspace_instances i2 ON i2.workspace_id = w2.id
            JOIN meter_events e ON e.workspace_instance_id = i2.id AND e.minute_ts >= $1
          WHERE w2.owner_id = r.owner_id) AS minutes
       FROM running r LEFT JOIN billing_accounts a ON a.user_id = r.owner_id`,
      [periodStart],
    );
    return rows.map((r) => ({
      userId: r.owner_id,
      plan: r.plan,
      minutes: Number(r.minutes),
      workspaceIds: r.workspace_ids,
    }));
  }

  /**
   * Quota warnings, one per workspace and dedupe key (the key carries the period and the threshold, so each
   * is sent once per period), announced to the owner's feeds at commit. How many were new.
   */
  async warn(
    warnings: Array<{ userId: string; workspaceId: string; title: string; body: string; dedupeKey: string }>,
  ): Promise<number> {
    if (warnings.length === 0) return 0;
    const inserted = await this.#pool.query<{ id: string; user_id: string }>(
      `WITH ins AS (
         INSERT INTO notifications (user_id, workspace_id, kind, title, body, dedupe_key)
         SELECT u, w, 'billing', t, b, k
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[]) AS v(u, w, t, b, k)
         ON CONFLICT (workspace_id, dedupe_key) DO NOTHING
         RETURNING id, user_id
       )
       SELECT id, user_id, pg_notify($6, user_id || ':' || id) FROM ins`,
      [
        warnings.map((w) => w.userId),
        warnings.map((w) => w.workspaceId),
        warnings.map((w) => w.title),
        warnings.map((w) => w.body),
        warnings.map((w) => w.dedupeKey),
        NOTIFICATION_CHANNEL,
      ],
    );
    return inserted.rowCount ?? 0;
  }

  // --- Reads for users (their own) and operators (anyone's) -------------------------------------------

  /** The user whose billing this actor may read: the signed-in user themself, or anyone for operators. */
  #subject(userId: string | undefined): string {
    const scope = this.#access.scopeOf("billing.read", "user");
    if (scope.kind === "owner") {
      if (userId !== undefined && userId !== scope.userId) throw new NotFound("user");
      return scope.userId;
    }
    if (scope.kind === "workspace") throw new NotFound("user");
    if (!userId || !isUuid(userId)) throw new NotFound("user");
    return userId;
  }

  /** A user's billing account (defaults when none is stored); NotFound for a user who does not exist. */
  async account(userId?: string): Promise<BillingAccount> {
    const subject = this.#subject(userId);
    const rows = await this.#rows<{
      id: string;
      plan: string | null;
      stripe_customer_id: string | null;
      subscription_id: string | null;
      subscription_status: string | null;
    }>(sql`SELECT u.id, a.plan, a.stripe_customer_id, a.subscription_id, a.subscription_status
           FROM users u LEFT JOIN billing_accounts a ON a.user_id = u.id WHERE u.id = ${subject}`);
    const r = rows[0];
    if (!r) throw new NotFound("user");
    return {
      userId: r.id,
      plan: r.plan,
      stripeCustomerId: r.stripe_customer_id,
      subscriptionId: r.subscription_id,
      subscriptionStatus: r.subscription_status,
    };
  }

  /** Minutes since `periodStart`, per live-or-recent workspace of the user (zero-minute ones included). */
  async minutesByWorkspace(periodStart: Date, userId?: string): Promise<WorkspaceMinutes[]> {
    const subject = this.#subject(userId);
    const rows = await this.#rows<{ id: string; name: string; minutes: string }>(
      sql`SELECT w.id, w.name,
            (SELECT coalesce(sum(e.quantity), 0) FROM workspace_instances i
               JOIN meter_events e ON e.workspace_instance_id = i.id AND e.minute_ts >= ${periodStart}
             WHERE i.workspace_id = w.id) AS minutes
          FROM workspaces w
          WHERE w.owner_id = ${subject}
            AND (w.state <> 'destroyed' OR w.destroyed_at >= ${periodStart})
          ORDER BY w.created_at`,
    );
    return rows.map((r) => ({ workspaceId: r.id, name: r.name, minutes: Number(r.minutes) }));
  }

  /** The user's minutes since `periodStart`, all workspaces together. */
  async totalMinutes(periodStart: Date, userId?: string): Promise<number> {
    const subject = this.#subject(userId);
    const rows = await this.#rows<{ minutes: string }>(
      sql`SELECT coalesce(sum(e.quantity), 0) AS minutes
          FROM workspaces w
          JOIN workspace_instances i ON i.workspace_id = w.id
          JOIN meter_events e ON e.workspace_instance_id = i.id AND e.minute_ts >= ${periodStart}
          WHERE w.owner_id = ${subject}`,
    );
    return Number(rows[0]!.minutes);
  }

  /** Minutes per UTC day since `periodStart`, days with none left out. */
  async minutesByDay(periodStart: Date, userId?: string): Promise<DayMinutes[]> {
    const subject = this.#subject(userId);
    const rows = await this.#rows<{ day: string; minutes: string }>(
      sql`SELECT to_char(date_trunc('day', e.minute_ts AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS day,
                 sum(e.quantity) AS minutes
          FROM workspaces w
          JOIN workspace_instances i ON i.workspace_id = w.id
          JOIN meter_events e ON e.workspace_instance_id = i.id AND e.minute_ts >= ${periodStart}
          WHERE w.owner_id = ${subject}
          GROUP BY 1 ORDER BY 1`,
    );
    return rows.map((r) => ({ day: r.day, minutes: Number(r.minutes) }));
  }

  /**
   * Serializes one user's starts (create, wake) until the transaction ends, so two at once cannot both pass
   * the running-workspaces quota. Taken last by every start, after its other locks, so it cannot deadlock.
   */
  async lockStarts(userId: string): Promise<void> {
    const subject = this.#subject(userId);
    await this.#access.db.execute(
      sql`SELECT pg_advisory_xact_lock(hashtextextended(${`start:${subject}`}, 0))`,
    );
  }

  /** The user's workspaces that are running or on their way up, other than `exceptWorkspaceId`. */
  async runningCount(userId: string, exceptWorkspaceId: string | null): Promise<number> {
    const subject = this.#subject(userId);
    const rows = await this.#rows<{ n: string }>(
      sql`SELECT count(*) AS n FROM workspaces
          WHERE owner_id = ${subject}
            AND state IN ('provisioning','starting','ready','unhealthy','waking')
            AND (${exceptWorkspaceId}::uuid IS NULL OR id <> ${exceptWorkspaceId}::uuid)`,
    );
    return Number(rows[0]!.n);
  }

  /** An operator's reference to a user (id, external id or email) as their id; NotFound when none or several match. */
  async resolveUser(ref: string): Promise<string> {
    this.#access.require("billing.manage", "user");
    const rows = await this.#rows<{ id: string }>(
      sql`SELECT id FROM users
          WHERE id::text = lower(${ref}) OR external_id = ${ref} OR lower(email) = lower(${ref})
          LIMIT 2`,
    );
    if (rows.length !== 1) throw new NotFound("user");
    return rows[0]!.id;
  }

  /** Sets a user's plan (null: the default plan). NotFound for a user who does not exist. */
  async setPlan(userId: string, plan: string | null): Promise<void> {
    this.#access.require("billing.manage", "user");
    if (!isUuid(userId)) throw new NotFound("user");
    const rows = await this.#rows<{ id: string }>(sql`SELECT id FROM users WHERE id = ${userId}`);
    if (rows.length === 0) throw new NotFound("user");
    await this.#access.db.execute(
      sql`INSERT INTO billing_accounts (user_id, plan) VALUES (${userId}, ${plan})
          ON CONFLICT (user_id) DO UPDATE SET plan = EXCLUDED.plan, updated_at = now()`,
    );
  }

  /** Runs on the actor's connection (a transaction's, inside one), so a start's quota check sees its own. */
  async #rows<R>(query: ReturnType<typeof sql>): Promise<R[]> {
    const result = await this.#access.db.execute(query);
    return result.rows as R[];
  }
}
