/**
 * What the reconciler (`system:reconciler`) reads and writes: every live workspace with its open instance
 * in one query, then at most one batched write per kind of finding. Each method is one statement, so the
 * reconciler can count its queries.
 */
import type { Access } from "./access.ts";

export interface LiveWorkspace {
  id: string;
  state: string;
  instanceId: string | null;
  publicIp: string | null;
  readyAt: Date | null;
  instanceAgeMs: number | null;
}

export interface ReconcileFinding {
  kind: string;
  workspaceId: string;
  detail: string;
}

export class ReconcileStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  async live(): Promise<LiveWorkspace[]> {
    const rows = await this.#query<{
      id: string;
      state: string;
      instance_id: string | null;
      public_ip: string | null;
      ready_at: Date | null;
      instance_age_ms: string | null;
    }>(
      `SELECT w.id, w.state, i.id AS instance_id, i.public_ip, i.ready_at,
              (extract(epoch FROM now() - i.started_at) * 1000)::bigint AS instance_age_ms
       FROM workspaces w
       LEFT JOIN workspace_instances i ON i.workspace_id = w.id AND i.stopped_at IS NULL
       WHERE w.state <> 'destroyed'`,
    );
    return rows.map((r) => ({
      id: r.id,
      state: r.state,
      instanceId: r.instance_id,
      publicIp: r.public_ip,
      readyAt: r.ready_at,
      instanceAgeMs: r.instance_age_ms === null ? null : Number(r.instance_age_ms),
    }));
  }

  /** Stores the public IP each instance is observed with. */
  async fixPublicIps(fixes: Array<{ instanceId: string; publicIp: string | null }>): Promise<void> {
    await this.#query(
      `UPDATE workspace_instances i SET public_ip = v.ip
       FROM unnest($1::uuid[], $2::text[]) AS v(id, ip) WHERE i.id = v.id`,
      [fixes.map((f) => f.instanceId), fixes.map((f) => f.publicIp)],
    );
  }

  /**
   * Workspaces said to be running whose server is gone become `failed`, unless a build has replaced the
   * instance that was found missing since (a hibernate and a wake between the read and this write). The
   * missing instance is closed with it: compute minutes are metered from open instances, and one left open
   * billed a minute a minute for a server that no longer exists, until its owner acted.
   */
  async failMissing(missing: Array<{ workspaceId: string; instanceId: string }>): Promise<void> {
    // The instance first, then the workspace: the order the agent API and the health prober lock them in.
    await this.#query(
      `WITH closed AS (
         UPDATE workspace_instances i SET stopped_at = now(), agent_lifecycle = 'off'
         FROM unnest($1::uuid[], $2::uuid[]) AS v(workspace_id, instance_id), workspaces w
         WHERE i.id = v.instance_id AND i.workspace_id = v.workspace_id AND i.stopped_at IS NULL
           AND w.id = v.workspace_id AND w.state IN ('ready','unhealthy','starting')
         RETURNING i.workspace_id)
       UPDATE workspaces w SET state = 'failed', state_changed_at = now()
       FROM closed WHERE w.id = closed.workspace_id AND w.state IN ('ready','unhealthy','starting')`,
      [missing.map((m) => m.workspaceId), missing.map((m) => m.instanceId)],
    );
  }

  /** Workspaces whose agent never reported ready become `unhealthy`. */
  async markAgentTimedOut(workspaceIds: string[]): Promise<void> {
    await this.#query(
      "UPDATE workspaces SET state = 'unhealthy', state_changed_at = now() WHERE id = ANY($1::uuid[]) AND state = 'starting'",
      [workspaceIds],
    );
  }

  /** One audit row per finding acted on (`reconcile.<kind>`). */
  async audit(findings: ReconcileFinding[]): Promise<void> {
    await this.#query(
      `INSERT INTO audit_log (actor_kind, action, target_type, target_id, details)
       SELECT 'system', 'reconcile.' || k, 'workspace', id, jsonb_build_object('detail', d, 'actor', 'system:reconciler')
       FROM unnest($1::text[], $2::text[], $3::text[]) AS v(k, id, d)`,
      [findings.map((f) => f.kind), findings.map((f) => f.workspaceId), findings.map((f) => f.detail)],
    );
  }

  async #query<R extends object>(text: string, values: unknown[] = []): Promise<R[]> {
    this.#access.require("workspace.reconcile", "workspace");
    return (await this.#access.pool.query<R>(text, values)).rows;
  }
}
