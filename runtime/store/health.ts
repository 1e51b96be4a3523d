/**
 * What the health prober (`system:health`) reads and writes: the boxes to probe, one run at a time across
 * replicas, and each verdict with its hysteresis counters and any state change, in one transaction. The
 * rules that turn counters into a transition are the prober's (runtime/boxnet/health-rules.ts).
 */
import type { PoolClient } from "pg";
import type { HealthCounters, HealthTransition } from "../boxnet/health-rules.ts";
import type { Access } from "./access.ts";

export interface HealthTarget {
  workspaceId: string;
  instanceId: string;
  publicIp: string | null;
  tailnetIp: string | null;
  terminalPort: number | null;
  /** Milliseconds since the agent's last heartbeat; null if it never sent one. */
  heartbeatAgeMs: number | null;
}

/** The verdict on one probe: the new counters and the state change they call for, if any. */
export type HealthVerdict = HealthCounters & { transition: HealthTransition };

/** Arbitrary but fixed: the key of the advisory lock that serialises probe runs across replicas. */
const RUN_LOCK = "hashtext('berth:health-probe')";

export class HealthStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /** Runs `fn` holding the probe-run lock; null, without running it, while another run holds the lock. */
  async exclusiveRun<T>(fn: () => Promise<T>): Promise<T | null> {
    this.#access.require("workspace.health", "workspace");
    const lock = await this.#access.pool.connect();
    try {
      const { rows } = await lock.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${RUN_LOCK}) AS ok`);
      if (!rows[0]?.ok) return null;
      try {
        return await fn();
      } finally {
        await lock.query(`SELECT pg_advisory_unlock(${RUN_LOCK})`);
      }
    } finally {
      lock.release();
    }
  }

  /** Every `ready` or `unhealthy` workspace's open instance. */
  async targets(): Promise<HealthTarget[]> {
    this.#access.require("workspace.health", "workspace");
    const { rows } = await this.#access.pool.query<{
      workspace_id: string;
      instance_id: string;
      public_ip: string | null;
      tailnet_ip: string | null;
      terminal_port: number | null;
      heartbeat_age_ms: string | null;
    }>(
      `SELECT w.id AS workspace_id, i.id AS instance_id, i.public_ip, i.tailnet_ip, i.terminal_port,
              (extract(epoch FROM now() - i.last_heartbeat_at) * 1000)::bigint AS heartbeat_age_ms
       FROM workspaces w
       JOIN workspace_instances i ON i.workspace_id = w.id AND i.stopped_at IS NULL
       WHERE w.state IN ('ready', 'unhealthy')`,
    );
    return rows.map((r) => ({
      workspaceId: r.workspace_id,
      instanceId: r.instance_id,
      publicIp: r.public_ip,
      tailnetIp: r.tailnet_ip,
      terminalPort: r.terminal_port,
      heartbeatAgeMs: r.heartbeat_age_ms === null ? null : Number(r.heartbeat_age_ms),
    }));
  }

  /**
   * Records one probe of `target`: reads its counters and state under row locks, asks `decide` for the
   * verdict, and stores counters, the last outcome (`last`, address-free) and any state change with its
   * audit row, in one transaction. Returns the transition made; null also when the instance stopped while
   * it was probed (its result then means nothing).
   */
  async record(
    target: HealthTarget,
    last: { summary: string; [detail: string]: unknown },
    decide: (current: HealthCounters, state: string) => HealthVerdict,
  ): Promise<HealthTransition> {
    this.#access.require("workspace.health", "workspace");
    const client = await this.#access.pool.connect();
    try {
      await client.query("BEGIN");
      const transition = await this.#recordIn(client, target, last, decide);
      await client.query("COMMIT");
      return transition;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async #recordIn(
    client: PoolClient,
    target: HealthTarget,
    last: { summary: string; [detail: string]: unknown },
    decide: (current: HealthCounters, state: string) => HealthVerdict,
  ): Promise<HealthTransition> {
    // Instance first, then workspace: the order the agent API's readiness update takes them in.
    const { rows } = await client.query<{
      health_failures: number;
      health_successes: number;
      marked: boolean;
    }>(
      `SELECT health_failures, health_successes, probe_unhealthy_since IS NOT NULL AS marked
       FROM workspace_instances WHERE id = $1 AND stopped_at IS NULL FOR UPDATE`,
      [target.instanceId],
    );
    const { rows: ws } = await client.query<{ state: string }>(
      "SELECT state FROM workspaces WHERE id = $1 FOR UPDATE",
      [target.workspaceId],
    );
    const current = rows[0];
    const state = ws[0]?.state;
    if (!current || !state) return null;
    const next = decide(
      {
        failures: current.health_failures,
        successes: current.health_successes,
        markedUnhealthy: current.marked,
      },
      state,
    );
    const mark =
      next.transition === "unhealthy"
        ? "now()"
        : next.transition === "ready"
          ? "NULL"
          : "probe_unhealthy_since";
    await client.query(
      `UPDATE workspace_instances
       SET health_failures = $2, health_successes = $3, health_checked_at = now(), health_last = $4,
           probe_unhealthy_since = ${mark}
       WHERE id = $1`,
      [target.instanceId, next.failures, next.successes, JSON.stringify(last)],
    );
    if (next.transition) {
      await client.query("UPDATE workspaces SET state = $2, state_changed_at = now() WHERE id = $1", [
        target.workspaceId,
        next.transition,
      ]);
      await client.query(
        `INSERT INTO audit_log (actor_kind, action, target_type, target_id, details)
         VALUES ('system', $1, 'workspace', $2, jsonb_build_object('detail', $3::text, 'actor', 'system:health'))`,
        [`health.${next.transition}`, target.workspaceId, last.summary],
      );
    }
    return next.transition;
  }
}
