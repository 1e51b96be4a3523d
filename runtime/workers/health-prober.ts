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
import type { Logger } from "../platform/logger.ts";
import type { Metrics } from "../platform/metrics.ts";
import { SYSTEM } from "../store/actors.ts";
import type { HealthTarget } from "../store/health.ts";
import type { AuthorizedStore, Store } from "../store/store.ts";

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

export class HealthProber {
  /** As `system:health`: it reads box addresses and terminal credentials, and records verdicts. */
  readonly #store: AuthorizedStore;
  readonly #upstream: UpstreamResolver;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #o: HealthOptions;
  /** Shutdown: a run in progress stops starting probes (its spread can last half a minute). */
  readonly #stopping = new AbortController();

  constructor(deps: {
    store: Store;
    upstream: UpstreamResolver;
    metrics: Metrics;
    log: Logger;
    options?: Partial<HealthOptions>;
  }) {
    this.#store = deps.store.as(SYSTEM.health);
    this.#upstream = deps.upstream;
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
    const boxes = await this.#store.health.exclusiveRun(() => this.#run());
    if (!boxes) return { skipped: true, boxes: [], ms: performance.now() - started };
    this.#metrics.healthRunSeconds.observe((performance.now() - started) / 1000);
    return { skipped: false, boxes, ms: performance.now() - started };
  }

  async #run(): Promise<BoxHealth[]> {
    const rows = await this.#store.health.targets();
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
          this.#log.error({ err, workspaceId: next.row.workspaceId }, "health probe failed to record");
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#o.concurrency, rows.length) }, worker));
    return results;
  }

  async #activeChecks(row: HealthTarget): Promise<{ http: ActiveOutcome; handshake: ActiveOutcome }> {
    const none = (detail: string) => ({ http: { ok: false, detail }, handshake: { ok: false, detail } });
    if (!row.terminalPort || (!row.publicIp && !row.tailnetIp)) return none("no terminal address");
    const credential = await this.#store.secrets.terminalCredential(row.workspaceId);
    if (!credential) return none("no terminal credential");
    const box = {
      id: row.instanceId,
      publicIp: row.publicIp,
      tailnetIp: row.tailnetIp,
      terminalPort: row.terminalPort,
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

  async #probeBox(row: HealthTarget): Promise<BoxHealth> {
    const { http, handshake } = await this.#activeChecks(row);
    const age = row.heartbeatAgeMs;
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
    const transition = await this.#store.health.record(
      row,
      { passed, path, summary, checks },
      (current, state) => nextHealth(current, passed, state, this.#o),
    );
    if (transition) {
      this.#metrics.healthTransitions.inc({ to: transition });
      const log = transition === "unhealthy" ? this.#log.warn : this.#log.info;
      log.call(this.#log, { workspaceId: row.workspaceId, summary }, `health: workspace ${transition}`);
    }
    return {
      workspaceId: row.workspaceId,
      instanceId: row.instanceId,
      passed,
      checks,
      transition,
      summary,
    };
  }
}
