/**
 * Operator actions on workspace stacks, shared by the admin API and `berth stacks`: list with drift, show
 * the diff a build would apply, repair a stuck stack, and forget a record (listing what it leaves behind).
 */

import { and, eq, isNull, sql } from "drizzle-orm";
import type { ObservedState, StackDiff, Transition, WorkspaceDriver } from "../../../stacks/driver.ts";
import { Conflict, NotFound } from "../../platform/errors.ts";
import { isUuid } from "../../platform/ids.ts";
import type { SecretBox } from "../../platform/secret-box.ts";
import { writeAudit } from "../../store/audit-log.ts";
import type { Database } from "../../store/client.ts";
import { workspaceBuilds, workspaceInstances, workspaces, workspaceVolumes } from "../../store/schema.ts";
import { workspaceSpec } from "../builds/spec.ts";

export interface OperatorDeps {
  database: Database;
  driver: WorkspaceDriver;
  secretBox: SecretBox;
  controlPlaneUrl: string;
}

export interface StackRow {
  workspaceId: string;
  ownerId: string | null;
  state: string | null;
  observed: "running" | "stopped" | "absent";
  drift: string | null;
}

async function loadWorkspace(deps: OperatorDeps, id: string) {
  if (!isUuid(id)) throw new NotFound("workspace");
  const [row] = await deps.database.db.select().from(workspaces).where(eq(workspaces.id, id));
  if (!row) throw new NotFound("workspace");
  return row;
}

/** Every live record and every observed stack, side by side (one listing, one query). */
export async function listStacks(deps: OperatorDeps): Promise<StackRow[]> {
  const observed = new Map<string, ObservedState>(
    (await deps.driver.observeAll()).map((o) => [o.workspaceId, o]),
  );
  const rows = await deps.database.db
    .select({ id: workspaces.id, ownerId: workspaces.ownerId, state: workspaces.state })
    .from(workspaces)
    .where(sql`${workspaces.state} <> 'destroyed'`);
  const out: StackRow[] = rows.map((r) => {
    const o = observed.get(r.id);
    observed.delete(r.id);
    const expectRunning = ["ready", "unhealthy", "starting"].includes(r.state);
    const drift = expectRunning && !o?.running ? "record says running, no server" : null;
    return {
      workspaceId: r.id,
      ownerId: r.ownerId,
      state: r.state,
      observed: o ? (o.running ? "running" : "stopped") : "absent",
      drift,
    };
  });
  for (const o of observed.values()) {
    out.push({
      workspaceId: o.workspaceId,
      ownerId: null,
      state: null,
      observed: o.running ? "running" : "stopped",
      drift: "orphan: no live record",
    });
  }
  return out;
}

export async function diffStack(deps: OperatorDeps, id: string, transition?: Transition): Promise<StackDiff> {
  const ws = await loadWorkspace(deps, id);
  const wanted = transition ?? (["hibernated", "hibernating"].includes(ws.state) ? "stop" : "start");
  // The agent token only reaches userData, whose changes the program ignores, so a placeholder previews the same plan.
  const spec = await workspaceSpec(
    deps.database.db,
    deps.secretBox,
    ws,
    deps.controlPlaneUrl,
    "preview-only",
  );
  return deps.driver.preview(spec, wanted);
}

/**
 * Clears a stack stuck behind a stale lock or pending operations, then refreshes it. Refused while a build
 * holds the workspace; a workspace left in a transitional state with no build becomes `failed`.
 */
export async function repairStack(
  deps: OperatorDeps,
  id: string,
  operatorId: string | null,
): Promise<{ state: string }> {
  const ws = await loadWorkspace(deps, id);
  const client = await deps.database.pool.connect();
  try {
    // A build that just finished may hold the lock a moment longer; wait briefly before refusing.
    const deadline = Date.now() + 5_000;
    for (;;) {
      const { rows } = await client.query<{ ok: boolean }>(
        "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok",
        [`workspace:${ws.id}`],
      );
      if (rows[0]!.ok) break;
      if (Date.now() > deadline) {
        throw new Conflict("build_running", "a build holds this workspace; cancel it first");
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    try {
      const lines: string[] = [];
      await deps.driver.repair(
        ws.id,
        { stage: (s) => lines.push(`[${s}]`), line: (_l, m) => lines.push(m) },
        AbortSignal.timeout(10 * 60_000),
      );
      const [updated] = await deps.database.db
        .update(workspaces)
        .set({ state: "failed", stateChangedAt: new Date() })
        .where(
          and(
            eq(workspaces.id, ws.id),
            sql`${workspaces.state} IN ('provisioning','starting','hibernating','waking','destroying')`,
            sql`NOT EXISTS (SELECT 1 FROM ${workspaceBuilds} b WHERE b.workspace_id = ${ws.id} AND b.status IN ('pending','running'))`,
          ),
        )
        .returning();
      await writeAudit(deps.database.db, {
        actor: { kind: "operator", userId: operatorId },
        action: "admin.repair",
        targetType: "workspace",
        targetId: ws.id,
        details: { stateBefore: ws.state, stateAfter: updated?.state ?? ws.state },
      });
      return { state: updated?.state ?? ws.state };
    } finally {
      await client.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [`workspace:${ws.id}`]);
    }
  } finally {
    client.release();
  }
}

/**
 * Drops the record without touching the cloud: the workspace becomes `destroyed` and its instance and
 * volume rows are closed. Returns the cloud ids that still exist, which the operator must clean up.
 */
export async function forgetStack(
  deps: OperatorDeps,
  id: string,
  operatorId: string | null,
): Promise<{ leaked: string[] }> {
  const ws = await loadWorkspace(deps, id);
  const observed = await deps.driver.observe(ws.id);
  const leaked = observed?.resourceIds ?? [];
  await deps.database.db.transaction(async (tx) => {
    const now = new Date();
    await tx
      .update(workspaceBuilds)
      .set({ status: "canceled", finishedAt: now, error: "workspace forgotten by an operator" })
      .where(
        and(eq(workspaceBuilds.workspaceId, ws.id), sql`${workspaceBuilds.status} IN ('pending','running')`),
      );
    await tx
      .update(workspaceInstances)
      .set({ stoppedAt: now, agentLifecycle: "off" })
      .where(and(eq(workspaceInstances.workspaceId, ws.id), isNull(workspaceInstances.stoppedAt)));
    await tx
      .update(workspaceVolumes)
      .set({ deletedAt: now })
      .where(and(eq(workspaceVolumes.workspaceId, ws.id), isNull(workspaceVolumes.deletedAt)));
    await tx
      .update(workspaces)
      .set({ state: "destroyed", destroyedAt: now, stateChangedAt: now })
      .where(eq(workspaces.id, ws.id));
    await writeAudit(tx, {
      actor: { kind: "operator", userId: operatorId },
      action: "admin.forget",
      targetType: "workspace",
      targetId: ws.id,
      details: { leaked },
    });
  });
  return { leaked };
}
