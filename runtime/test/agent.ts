import { eq } from "drizzle-orm";
import type { WorkspaceSpec } from "../../stacks/driver.ts";
import type { ControlPlane } from "../app/server.ts";
import { markAgentReady } from "../domain/agents/readiness.ts";
import { hashAgentToken } from "../domain/workspaces/secrets.ts";
import { agentActor } from "../store/actors.ts";
import { workspaceInstances } from "../store/schema.ts";

/** Plays a box agent checking in as ready, through the same code path the agent API uses. */
export function agentChecksIn(cp: ControlPlane) {
  return async (spec: WorkspaceSpec) => {
    const { db } = cp.deps.database;
    const [instance] = await db
      .select()
      .from(workspaceInstances)
      .where(eq(workspaceInstances.agentTokenHash, hashAgentToken(spec.secrets.agentToken)));
    if (instance) await markAgentReady(cp.deps.store.as(agentActor(instance)), cp.deps.metrics);
  };
}
