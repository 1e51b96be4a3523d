/**
 * Active health checks of every `ready` or `unhealthy` box, run by a pg-boss schedule (once per minute
 * across replicas) or directly by tests through `probeAll()`. Within one run the boxes are spread over
 * `spreadMs` with random offsets (no thundering herd on the boxes or the resolver) and at most
 * `concurrency` are probed at once. A Postgres advisory lock keeps two runs from overlapping when one
 * takes longer than the schedule's period, so the hysteresis counters count each run once.
 *
 * Each box gets the terminal endpoint's HTTP check and WebSocket handshake (checks.ts, through the
 * resolver), and its agent's heartbeat age as passive health. The verdict feeds rules.ts; the state
 * change and the counters are written in one transaction, conditional on the state they were computed from.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { PoolClient } from "pg";
import {
  type CheckOutcome,
  describeFailure,
  type HealthCheckName,
  type HealthThresholds,
  type HealthTransition,
  nextHealth,
} from "../boxnet/health-rules.ts";
import type { UpstreamResolver } from "../boxnet/path-resolver.ts";
import { type ActiveOutcome, checkHandshake, checkHeartbeat, checkHttp } from "../boxnet/probes.ts";
import { readWorkspaceSecret } from "../domain/workspaces/secrets.ts";
import type { Logger } from "../platform/logger.ts";
import type { Metrics } from "../platform/metrics.ts";
import type { SecretBox } from "../platform/secret-box.ts";
import type { Database } from "../store/client.ts";

export interface HealthOptions extends HealthThresholds {
  /** Boxes probed at once. */
  concurrency: number;
  /** Each box's probe starts at a random offset in [0, spreadMs) from the start of the run. */
  spreadMs: number;
  /** Per active check, connect included. */
  checkTimeoutMs: number;
  /** A heartbeat older than this fails the passive check. */
  heartbeatStaleMs: number;
}

export const DEFAULT_HEALTH_OPTIONS: HealthOptions = {
  failThreshold: 3,
  recoverThreshold: 2,
  concurrency: 16,
  spreadMs: 30_000,
  checkTimeoutMs: 5_000,
  heartbeatStaleMs: 60_000,
};

export interface BoxHealth {
  workspaceId: string;
  instanceId: string;
  passed: boolean;
  checks: Record<HealthCheckName, CheckOutcome>;
  transition: HealthTransition;
  /** Address-free summary, also stored and audited on a transition. */
  summary: string;
}

export interface HealthRunReport {
  /** Another replica's run still held the lock: nothing was probed. */
  skipped: boolean;
  boxes: BoxHealth[];
  ms: number;
}

interface TargetRow {
  workspace_id: string;
  instance_id: string;
  public_ip: string | null;
  tailnet_ip: string | null;
  terminal_port: number | null;
  heartbeat_age_ms: string | null;
}

/** Arbitrary but fixed: the key of the advisory lock that serialises probe runs across replicas. */
const RUN_LOCK = "hashtext('berth:health-probe')";

export class HealthProber {
  readonly #database: Database;
  readonly #upstream: UpstreamResolver;
  readonly #secretBox: SecretBox;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #o: HealthOptions;
  /** Shutdown: a run in progress stops starting probes (its spread can last half a minute). */
  readonly #stopping = new AbortController();

  constructor(deps: {
    database: Database;
    upstream: UpstreamResolver;
    secretBox: SecretBox;
    metrics: Metrics;
    log: Logger;
    options?: Partial<HealthOptions>;
  }) {
    this.#database = deps.database;
    this.#upstream = deps.upstream;
    this.#secretBox = deps.secretBox;
    this.#metrics = deps.metrics;
    this.#log = deps.log;
    this.#o = { ...DEFAULT_HEALTH_OPTIONS, ...deps.options };
  }

  /** Ends a run in progress early and makes later calls no-ops; call before the database closes. */
  stop(): void {
    this.#stopping.abort();
  }

  async probeAll(): Promise<HealthRunReport> {
    if (this.#stopping.signal.aborted) return { skipped: true, boxes: [], ms: 0 };
    const started = performance.now();
    const lock = await this.#database.pool.connect();
    try {
      const { rows } = await lock.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${RUN_LOCK}) AS ok`);
      if (!rows[0]?.ok) return { skipped: true, boxes: [], ms: performance.now() - started };
      try {
        const boxes = await this.#run();
        this.#metrics.healthRunSeconds.observe((performance.now() - started) / 1000);
        return { skipped: false, boxes, ms: performance.now() - started };
      } finally {
        await lock.query(`SELECT pg_advisory_unlock(${RUN_LOCK})`);
      }
    } finally {
      lock.release();
    }
  }

  async #run(): Promise<BoxHealth[]> {
    const { rows } = await this.#database.pool.query<TargetRow>(
      `SELECT w.id AS workspace_id, i.id AS instance_id, i.public_ip, i.tailnet_ip, i.terminal_port,
              (extract(epoch FROM now() - i.last_heartbeat_at) * 1000)::bigint AS heartbeat_age_ms
       FROM workspaces w
       JOIN workspace_instances i ON i.workspace_id = w.id AND i.stopped_at IS NULL
       WHERE w.state IN ('ready', 'unhealthy')`,
    );
    const runStart = Date.now();
    const queue = rows
      .map((row) => ({ row, at: runStart + Math.random() * this.#o.spreadMs }))
      .sort((a, b) => a.at - b.at);
    const results: BoxHealth[] = [];
    const worker = async () => {
      const stopping = this.#stopping.signal;
      for (let next = queue.shift(); next && !stopping.aborted; next = queue.shift()) {
        const wait = next.at - Date.now();
        if (wait > 0) await sleep(wait, undefined, { signal: stopping }).catch(() => {});
        if (stopping.aborted) return;
        try {
          results.push(await this.#probeBox(next.row));
        } catch (err) {
          // A database hiccup for one box must not end the run for the others.
          this.#log.error({ err, workspaceId: next.row.workspace_id }, "health probe failed to record");
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#o.concurrency, rows.length) }, worker));
    return results;
  }

  async #activeChecks(row: TargetRow): Promise<{ http: ActiveOutcome; handshake: ActiveOutcome }> {
    const none = (detail: string) => ({ http: { ok: false, detail }, handshake: { ok: false, detail } });
    if (!row.terminal_port || (!row.public_ip && !row.tailnet_ip)) return none("no terminal address");
    const credential = await readWorkspaceSecret(
      this.#database.db,
      this.#secretBox,
      row.workspace_id,
      "ttyd-credential",
    );
    if (!credential) return none("no terminal credential");
    const box = {
      id: row.instance_id,
      publicIp: row.public_ip,
      tailnetIp: row.tailnet_ip,
      terminalPort: row.terminal_port,
    };
    const timed = async (name: "http" | "handshake", check: () => Promise<ActiveOutcome>) => {
      const t = performance.now();
      const outcome = await check();
      this.#metrics.healthCheckSeconds.observe({ check: name }, (performance.now() - t) / 1000);
      return outcome;
    };
    const http = await timed("http", () =>
      checkHttp(this.#upstream, box, credential, this.#o.checkTimeoutMs),
    );
    // Both paths just failed to connect: a second round of connect timeouts would tell nothing new.
    const handshake =
      http.detail === "unreachable"
        ? { ok: false, detail: "unreachable" }
        : await timed("handshake", () =>
            checkHandshake(this.#upstream, box, credential, this.#o.checkTimeoutMs),
          );
    return { http, handshake };
  }

  async #probeBox(row: TargetRow): Promise<BoxHealth> {
    const { http, handshake } = await this.#activeChecks(row);
    const age = row.heartbeat_age_ms === null ? null : Number(row.heartbeat_age_ms);
    const checks: Record<HealthCheckName, CheckOutcome> = {
      http: { ok: http.ok, detail: http.detail },
      handshake: { ok: handshake.ok, detail: handshake.detail },
      heartbeat: checkHeartbeat(age, this.#o.heartbeatStaleMs),
    };
    for (const [check, c] of Object.entries(checks))
      this.#metrics.healthChecks.inc({ check, result: c.ok ? "ok" : "fail" });
    const passed = checks.http.ok && checks.handshake.ok && checks.heartbeat.ok;
    const summary = describeFailure(checks);
    const path = http.path ?? handshake.path ?? null;
    const transition = await this.#record(row, passed, { passed, path, summary, checks });
    if (transition) {
      this.#metrics.healthTransitions.inc({ to: transition });
      const log = transition === "unhealthy" ? this.#log.warn : this.#log.info;
      log.call(this.#log, { workspaceId: row.workspace_id, summary }, `health: workspace ${transition}`);
    }
    return {
      workspaceId: row.workspace_id,
      instanceId: row.instance_id,
      passed,
      checks,
      transition,
      summary,
    };
  }

  /** Counters, last outcome and any state change, in one transaction; returns the change made. */
  async #record(row: TargetRow, passed: boolean, last: object): Promise<HealthTransition> {
    const client = await this.#database.pool.connect();
    try {
      await client.query("BEGIN");
      const transition = await this.#recordIn(client, row, passed, last);
      await client.query("COMMIT");
      return transition;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async #recordIn(client: PoolClient, row: TargetRow, passed: boolean, last: object) {
    // Instance first, then workspace: the order the agent API's readiness update takes them in.
    const { rows } = await client.query<{
      health_failures: number;
      health_successes: number;
      marked: boolean;
    }>(
      `SELECT health_failures, health_successes, probe_unhealthy_since IS NOT NULL AS marked
       FROM workspace_instances WHERE id = $1 AND stopped_at IS NULL FOR UPDATE`,
      [row.instance_id],
    );
    const { rows: ws } = await client.query<{ state: string }>(
      "SELECT state FROM workspaces WHERE id = $1 FOR UPDATE",
      [row.workspace_id],
    );
    const current = rows[0];
    const state = ws[0]?.state;
    if (!current || !state) return null; // stopped while probed: its result no longer means anything
    const next = nextHealth(
      {
        failures: current.health_failures,
        successes: current.health_successes,
        markedUnhealthy: current.marked,
      },
      passed,
      state,
      this.#o,
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
      [row.instance_id, next.failures, next.successes, JSON.stringify(last)],
    );
    if (next.transition) {
      await client.query("UPDATE workspaces SET state = $2, state_changed_at = now() WHERE id = $1", [
        row.workspace_id,
        next.transition,
      ]);
      await client.query(
        `INSERT INTO audit_log (actor_kind, action, target_type, target_id, details)
         VALUES ('system', $1, 'workspace', $2, jsonb_build_object('detail', $3::text))`,
        [`health.${next.transition}`, row.workspace_id, (last as { summary: string }).summary],
      );
    }
    return next.transition;
  }
}
