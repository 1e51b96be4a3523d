/**
 * Operator actions on workspace stacks, shared by the admin API and `berth stacks`: list with drift, show
 * the diff a build would apply, repair a stuck stack, and forget a record (listing what it leaves behind).
 */

import type { ObservedState, StackDiff, Transition, WorkspaceDriver } from "../../../stacks/driver.ts";
import type { AuthorizedStore } from "../../store/store.ts";
import { workspaceSpec } from "../builds/spec.ts";

export interface OperatorDeps {
  /** The store as the operator (`system:operator`, on behalf of an admin or the command line). */
  scope: AuthorizedStore;
  driver: WorkspaceDriver;
  controlPlaneUrl: string;
}

export interface StackRow {
  workspaceId: string;
  ownerId: string | null;
  state: string | null;
  observed: "running" | "stopped" | "absent";
  drift: string | null;
}

/** Every live record and every observed stack, side by side (one listing, one query). */
export async function listStacks(deps: OperatorDeps): Promise<StackRow[]> {
  const observed = new Map<string, ObservedState>(
    (await deps.driver.observeAll()).map((o) => [o.workspaceId, o]),
  );
  const rows = await deps.scope.operators.liveWorkspaces();
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
  const ws = await deps.scope.operators.workspace(id);
  const wanted = transition ?? (["hibernated", "hibernating"].includes(ws.state) ? "stop" : "start");
  // The agent token only reaches userData, whose changes the program ignores, so a placeholder previews the same plan.
  const spec = await workspaceSpec(deps.scope.secrets, ws, deps.controlPlaneUrl, "preview-only");
  return deps.driver.preview(spec, wanted);
}

/**
 * Clears a stack stuck behind a stale lock or pending operations, then refreshes it. Refused while a build
 * holds the workspace; a workspace left in a transitional state with no build becomes `failed`.
 */
export async function repairStack(deps: OperatorDeps, id: string): Promise<{ state: string }> {
  const { operators } = deps.scope;
  const ws = await operators.workspace(id);
  return operators.whileNoBuild(ws.id, async () => {
    const lines: string[] = [];
    await deps.driver.repair(
      ws.id,
      { stage: (s) => lines.push(`[${s}]`), line: (_l, m) => lines.push(m) },
      AbortSignal.timeout(10 * 60_000),
    );
    const updated = await operators.failIfStuck(ws.id);
    await deps.scope.audit({
      action: "admin.repair",
      targetType: "workspace",
      targetId: ws.id,
      details: { stateBefore: ws.state, stateAfter: updated?.state ?? ws.state },
    });
    return { state: updated?.state ?? ws.state };
  });
}

/**
 * Drops the record without touching the cloud: the workspace becomes `destroyed` and its instance and
 * volume rows are closed. Returns the cloud ids that still exist, which the operator must clean up.
 */
export async function forgetStack(deps: OperatorDeps, id: string): Promise<{ leaked: string[] }> {
  const ws = await deps.scope.operators.workspace(id);
  const observed = await deps.driver.observe(ws.id);
  const leaked = observed?.resourceIds ?? [];
  await deps.scope.transaction(async (tx) => {
    await tx.operators.forget(ws.id);
    await tx.audit({ action: "admin.forget", targetType: "workspace", targetId: ws.id, details: { leaked } });
  });
  return { leaked };
}
