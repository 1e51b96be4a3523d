import { and, eq, sql } from "drizzle-orm";
import { Conflict } from "../../platform/errors.ts";
import { writeAudit } from "../../store/audit-log.ts";
import type { Db } from "../../store/client.ts";
import { workspaceBuilds, workspaces } from "../../store/schema.ts";
import { BUILD_CANCEL_CHANNEL } from "../../workers/build-worker.ts";
import type { Actor } from "../identity/actor.ts";
import type { BuildRow } from "../workspaces/service.ts";

/**
 * A pending build is canceled on the spot; a running one is asked to stop (NOTIFY, and the worker's
 * heartbeat re-checks the flag) and its worker records the outcome. Either way the workspace ends `failed`,
 * from which the user can wake, hibernate or destroy: what a half-run build left behind is unknown.
 */
export async function cancelBuild(db: Db, actor: Actor, build: BuildRow, ip?: string): Promise<BuildRow> {
  return db.transaction(async (tx) => {
    const [current] = await tx
      .select()
      .from(workspaceBuilds)
      .where(eq(workspaceBuilds.id, build.id))
      .for("update");
    if (!current || (current.status !== "pending" && current.status !== "running")) {
      throw new Conflict("build_finished", `build is already ${current?.status ?? "gone"}`, {
        status: current?.status ?? null,
      });
    }
    const now = new Date();
    const [updated] =
      current.status === "pending"
        ? await tx
            .update(workspaceBuilds)
            .set({
              status: "canceled",
              cancelRequestedAt: now,
              finishedAt: now,
              error: "canceled before it started",
            })
            .where(eq(workspaceBuilds.id, build.id))
            .returning()
        : await tx
            .update(workspaceBuilds)
            .set({ cancelRequestedAt: now })
            .where(eq(workspaceBuilds.id, build.id))
            .returning();
    if (current.status === "pending") {
      await tx
        .update(workspaces)
        .set({ state: "failed", stateChangedAt: now })
        .where(and(eq(workspaces.id, build.workspaceId)));
    } else {
      await tx.execute(sql`SELECT pg_notify(${BUILD_CANCEL_CHANNEL}, ${build.id})`);
    }
    await writeAudit(tx, {
      actor: { kind: "user", userId: actor.userId },
      action: "build.cancel",
      targetType: "build",
      targetId: build.id,
      ip: ip ?? null,
      details: { workspaceId: build.workspaceId, was: current.status },
    });
    return updated!;
  });
}
