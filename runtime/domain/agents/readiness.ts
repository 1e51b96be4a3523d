/**
 * The moment a box becomes usable: its agent reports `ready`. A start build that finished before that
 * leaves the workspace `starting`; this moves it to `ready` and records time-to-ready (once per instance).
 */
import { and, eq, inArray, isNull } from "drizzle-orm";
import type { Metrics } from "../../platform/metrics.ts";
import type { Db } from "../../store/client.ts";
import { workspaceBuilds, workspaceInstances, workspaces } from "../../store/schema.ts";
import type { WorkspaceState } from "../workspaces/state-machine.ts";

export async function markAgentReady(db: Db, metrics: Metrics, instanceId: string): Promise<void> {
  const secondsToReady = await db.transaction(async (tx) => {
    const open = and(eq(workspaceInstances.id, instanceId), isNull(workspaceInstances.stoppedAt));
    const [instance] = await tx
      .update(workspaceInstances)
      .set({ agentLifecycle: "ready", lastHeartbeatAt: new Date() })
      .where(open)
      .returning();
    if (!instance) return null;
    // Only a workspace waiting for its agent moves; one that is hibernating, failed or being destroyed stays.
    // One the health probes marked unhealthy stays too: its agent heartbeats but the control plane cannot
    // use its terminal, and only the probes (runtime/health) can tell when that is over.
    const from: WorkspaceState[] = instance.probeUnhealthySince ? ["starting"] : ["starting", "unhealthy"];
    await tx
      .update(workspaces)
      .set({ state: "ready", stateChangedAt: new Date() })
      .where(and(eq(workspaces.id, instance.workspaceId), inArray(workspaces.state, from)));
    const [first] = await tx
      .update(workspaceInstances)
      .set({ readyAt: new Date() })
      .where(and(open, isNull(workspaceInstances.readyAt)))
      .returning();
    if (!first?.readyAt || !first.buildId) return null;
    const [build] = await tx.select().from(workspaceBuilds).where(eq(workspaceBuilds.id, first.buildId));
    return build?.startedAt ? (first.readyAt.getTime() - build.startedAt.getTime()) / 1000 : null;
  });
  if (secondsToReady !== null && secondsToReady >= 0) metrics.timeToReady.observe(secondsToReady);
}
