import { Conflict } from "../../platform/errors.ts";
import type { BuildRow } from "../../store/rows.ts";
import type { AuthorizedStore } from "../../store/store.ts";

/**
 * A pending build is canceled on the spot; a running one is asked to stop (NOTIFY, and the worker's
 * heartbeat re-checks the flag) and its worker records the outcome. Either way the workspace ends `failed`,
 * from which the user can wake, hibernate or destroy: what a half-run build left behind is unknown.
 */
export async function cancelBuild(scope: AuthorizedStore, buildId: string, ip?: string): Promise<BuildRow> {
  return scope.transaction(async (tx) => {
    const current = await tx.builds.lockForCancel(buildId);
    if (current.status !== "pending" && current.status !== "running") {
      throw new Conflict("build_finished", `build is already ${current.status}`, { status: current.status });
    }
    const updated =
      current.status === "pending"
        ? await tx.builds.cancelPending(current.id)
        : await tx.builds.requestCancel(current.id);
    await tx.audit({
      action: "build.cancel",
      targetType: "build",
      targetId: current.id,
      ip: ip ?? null,
      details: { workspaceId: current.workspaceId, was: current.status },
    });
    return updated;
  });
}
