/**
 * Keeps database records and what exists in agreement. One tick costs one `observeAll()` (a single
 * listing, whatever the number of workspaces), one query for every live workspace and its open instance,
 * and at most one batched write per kind of finding: it never runs a driver operation per workspace.
 * Stuck builds are not its job: every build worker reaps those (see workers/build-worker.ts).
 */
import type { ObservedState, WorkspaceDriver } from "../../stacks/driver.ts";
import type { Logger } from "../platform/logger.ts";
import type { Metrics } from "../platform/metrics.ts";
import { SYSTEM } from "../store/actors.ts";
import type { ReconcileStore } from "../store/reconcile.ts";
import type { Store } from "../store/store.ts";

export type FindingKind = "ip_drift" | "missing_stack" | "orphan_stack" | "agent_timeout";

export interface Finding {
  kind: FindingKind;
  workspaceId: string;
  detail: string;
}

export interface ReconcileReport {
  live: number;
  observed: number;
  queries: number;
  findings: Finding[];
  ms: number;
}

/** States in which the database says a server should exist. */
const EXPECT_RUNNING = new Set(["ready", "unhealthy", "starting"]);

export class Reconciler {
  /** As `system:reconciler`: it reads every live workspace and fixes drift, nothing else. */
  readonly #store: ReconcileStore;
  readonly #driver: WorkspaceDriver;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #agentReadyTimeoutMs: number;

  constructor(deps: {
    store: Store;
    driver: WorkspaceDriver;
    metrics: Metrics;
    log: Logger;
    agentReadyTimeoutMs?: number;
  }) {
    this.#store = deps.store.as(SYSTEM.reconciler).reconcile;
    this.#driver = deps.driver;
    this.#metrics = deps.metrics;
    this.#log = deps.log;
    this.#agentReadyTimeoutMs = deps.agentReadyTimeoutMs ?? 10 * 60_000;
  }

  async tick(): Promise<ReconcileReport> {
    const started = performance.now();
    let queries = 0;
    // Every store call is one statement: counting calls counts queries.
    const q = <T>(call: Promise<T>): Promise<T> => {
      queries++;
      return call;
    };

    // The database first, then the listing: a build that finishes in between is then seen in a transitional
    // state (skipped), never as a workspace "ready" that a listing taken before its server existed lacks.
    const live = await q(this.#store.live());
    const observed = new Map<string, ObservedState>(
      (await this.#driver.observeAll()).map((o) => [o.workspaceId, o]),
    );

    const findings: Finding[] = [];
    const ipFixes: Array<{ instanceId: string; publicIp: string | null }> = [];
    const missing: Array<{ workspaceId: string; instanceId: string }> = [];
    const timedOut: string[] = [];
    const liveIds = new Set<string>();
    for (const row of live) {
      liveIds.add(row.id);
      const seen = observed.get(row.id);
      if (EXPECT_RUNNING.has(row.state) && row.instanceId && !seen?.running) {
        missing.push({ workspaceId: row.id, instanceId: row.instanceId });
        findings.push({
          kind: "missing_stack",
          workspaceId: row.id,
          detail: `state ${row.state} but no server exists`,
        });
        continue;
      }
      if (row.instanceId && seen?.running && seen.publicIp !== row.publicIp) {
        ipFixes.push({ instanceId: row.instanceId, publicIp: seen.publicIp });
        findings.push({ kind: "ip_drift", workspaceId: row.id, detail: "public IP changed outside Berth" });
      }
      if (row.state === "starting" && !row.readyAt && Number(row.instanceAgeMs) > this.#agentReadyTimeoutMs) {
        timedOut.push(row.id);
        findings.push({ kind: "agent_timeout", workspaceId: row.id, detail: "agent never reported ready" });
      }
    }
    for (const id of observed.keys()) {
      if (!liveIds.has(id)) {
        findings.push({
          kind: "orphan_stack",
          workspaceId: id,
          detail: "resources exist with no live workspace record",
        });
      }
    }

    if (ipFixes.length > 0) await q(this.#store.fixPublicIps(ipFixes));
    if (missing.length > 0) await q(this.#store.failMissing(missing));
    if (timedOut.length > 0) await q(this.#store.markAgentTimedOut(timedOut));
    const acted = findings.filter((f) => f.kind !== "orphan_stack");
    if (acted.length > 0) await q(this.#store.audit(acted));
    for (const f of findings) {
      this.#metrics.reconcileFindings.inc({ kind: f.kind });
      this.#log.warn({ workspaceId: f.workspaceId, kind: f.kind }, `reconciler: ${f.detail}`);
    }
    return { live: live.length, observed: observed.size, queries, findings, ms: performance.now() - started };
  }
}
