/**
 * Keeps database records and what exists in agreement. One tick costs one `observeAll()` (a single
 * listing, whatever the number of workspaces), one query for every live workspace and its open instance,
 * and at most one batched write per kind of finding: it never runs a driver operation per workspace.
 * Stuck builds are not its job: every build worker reaps those (see workers/build-worker.ts).
 */
import type { ObservedState, WorkspaceDriver } from "../../stacks/driver.ts";
import type { Logger } from "../platform/logger.ts";
import type { Metrics } from "../platform/metrics.ts";
import type { Database } from "../store/client.ts";

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

interface LiveRow {
  id: string;
  state: string;
  instance_id: string | null;
  public_ip: string | null;
  ready_at: Date | null;
  instance_age_ms: number | null;
}

/** States in which the database says a server should exist. */
const EXPECT_RUNNING = new Set(["ready", "unhealthy", "starting"]);

export class Reconciler {
  readonly #database: Database;
  readonly #driver: WorkspaceDriver;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #agentReadyTimeoutMs: number;

  constructor(deps: {
    database: Database;
    driver: WorkspaceDriver;
    metrics: Metrics;
    log: Logger;
    agentReadyTimeoutMs?: number;
  }) {
    this.#database = deps.database;
    this.#driver = deps.driver;
    this.#metrics = deps.metrics;
    this.#log = deps.log;
    this.#agentReadyTimeoutMs = deps.agentReadyTimeoutMs ?? 10 * 60_000;
  }

  async tick(): Promise<ReconcileReport> {
    const started = performance.now();
    let queries = 0;
    const q = async <R extends object>(text: string, values: unknown[] = []) => {
      queries++;
      return (await this.#database.pool.query<R>(text, values)).rows;
    };

    const observed = new Map<string, ObservedState>(
      (await this.#driver.observeAll()).map((o) => [o.workspaceId, o]),
    );
    const live = await q<LiveRow>(
      `SELECT w.id, w.state, i.id AS instance_id, i.public_ip, i.ready_at,
              (extract(epoch FROM now() - i.started_at) * 1000)::bigint AS instance_age_ms
       FROM workspaces w
       LEFT JOIN workspace_instances i ON i.workspace_id = w.id AND i.stopped_at IS NULL
       WHERE w.state <> 'destroyed'`,
    );

    const findings: Finding[] = [];
    const ipFixes: Array<[string, string | null]> = [];
    const missing: string[] = [];
    const timedOut: string[] = [];
    const liveIds = new Set<string>();
    for (const row of live) {
      liveIds.add(row.id);
      const seen = observed.get(row.id);
      if (EXPECT_RUNNING.has(row.state) && row.instance_id && !seen?.running) {
        missing.push(row.id);
        findings.push({
          kind: "missing_stack",
          workspaceId: row.id,
          detail: `state ${row.state} but no server exists`,
        });
        continue;
      }
      if (row.instance_id && seen?.running && seen.publicIp !== row.public_ip) {
        ipFixes.push([row.instance_id, seen.publicIp]);
        findings.push({ kind: "ip_drift", workspaceId: row.id, detail: "public IP changed outside Berth" });
      }
      if (
        row.state === "starting" &&
        !row.ready_at &&
        Number(row.instance_age_ms) > this.#agentReadyTimeoutMs
      ) {
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

    if (ipFixes.length > 0) {
      await q(
        `UPDATE workspace_instances i SET public_ip = v.ip
         FROM unnest($1::uuid[], $2::text[]) AS v(id, ip) WHERE i.id = v.id`,
        [ipFixes.map(([id]) => id), ipFixes.map(([, ip]) => ip)],
      );
    }
    if (missing.length > 0) {
      await q(
        "UPDATE workspaces SET state = 'failed', state_changed_at = now() WHERE id = ANY($1::uuid[]) AND state IN ('ready','unhealthy','starting')",
        [missing],
      );
    }
    if (timedOut.length > 0) {
      await q(
        "UPDATE workspaces SET state = 'unhealthy', state_changed_at = now() WHERE id = ANY($1::uuid[]) AND state = 'starting'",
        [timedOut],
      );
    }
    const acted = findings.filter((f) => f.kind !== "orphan_stack");
    if (acted.length > 0) {
      await q(
        `INSERT INTO audit_log (actor_kind, action, target_type, target_id, details)
         SELECT 'system', 'reconcile.' || k, 'workspace', id, jsonb_build_object('detail', d)
         FROM unnest($1::text[], $2::text[], $3::text[]) AS v(k, id, d)`,
        [acted.map((f) => f.kind), acted.map((f) => f.workspaceId), acted.map((f) => f.detail)],
      );
    }
    for (const f of findings) {
      this.#metrics.reconcileFindings.inc({ kind: f.kind });
      this.#log.warn({ workspaceId: f.workspaceId, kind: f.kind }, `reconciler: ${f.detail}`);
    }
    return { live: live.length, observed: observed.size, queries, findings, ms: performance.now() - started };
  }
}
