import { eq } from "drizzle-orm";
import { AGENT_API_PATHS, type HeartbeatRequestInput } from "../../box/protocol.ts";
import type { WorkspaceSpec } from "../../stacks/driver.ts";
import type { ControlPlane } from "../app/server.ts";
import { markAgentReady } from "../domain/agents/readiness.ts";
import { hashAgentToken } from "../domain/workspaces/secrets.ts";
import { agentActor } from "../store/actors.ts";
import { workspaceInstances } from "../store/schema.ts";
import type { TestControlPlane } from "./control-plane.ts";

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

/**
 * A box agent's heartbeat through the agent API: ready, up a few seconds, no error, with `metrics`; `over`
 * changes any other field. Answers the API's response (200 when accepted).
 */
export function sendHeartbeat(
  cp: Pick<TestControlPlane, "api">,
  agentToken: string,
  metrics: HeartbeatRequestInput["metrics"] = {},
  over: Partial<HeartbeatRequestInput> = {},
): Promise<Response> {
  return cp.api(AGENT_API_PATHS.heartbeat, {
    method: "POST",
    headers: { authorization: `Bearer ${agentToken}` },
    json: {
      lifecycle: "ready",
      agentVersion: "test",
      uptimeSeconds: 3,
      startedAt: new Date().toISOString(),
      lastError: null,
      metrics,
      ...over,
    },
  });
}
