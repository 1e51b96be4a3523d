import { eq } from "drizzle-orm";
import type { WorkspaceSpec } from "../../stacks/driver.ts";
import { markAgentReady } from "../agents/readiness.ts";
import { workspaceInstances } from "../db/schema.ts";
import type { ControlPlane } from "../server.ts";
import { hashAgentToken } from "../workspaces/secrets.ts";

/** Plays a box agent checking in as ready, through the same code path the agent API uses. */
export function agentChecksIn(cp: ControlPlane) {
  return async (spec: WorkspaceSpec) => {
    const { db } = cp.deps.database;
    const [instance] = await db
      .select()
      .from(workspaceInstances)
      .where(eq(workspaceInstances.agentTokenHash, hashAgentToken(spec.secrets.agentToken)));
    if (instance) await markAgentReady(db, cp.deps.metrics, instance.id);
  };
}
