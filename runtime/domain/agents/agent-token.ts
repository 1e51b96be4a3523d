import { and, eq, isNull } from "drizzle-orm";
import { Unauthenticated } from "../../platform/errors.ts";
import type { Db } from "../../store/client.ts";
import { workspaceInstances, workspaces } from "../../store/schema.ts";
import { hashAgentToken } from "../workspaces/secrets.ts";

export type InstanceRow = typeof workspaceInstances.$inferSelect;
export type AgentWorkspaceRow = typeof workspaces.$inferSelect;

/**
 * Resolves an agent's bearer token to its open instance. The token is looked up by hash: the database
 * holds nothing an attacker could replay. A closed instance's token stops working with the VM's life.
 */
export async function authenticateAgent(
  db: Db,
  authorization: string | undefined,
): Promise<{ instance: InstanceRow; workspace: AgentWorkspaceRow }> {
  const token = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1];
  if (!token) throw new Unauthenticated("agent_unauthorized", "send 'Authorization: Bearer <agent token>'");
  const [row] = await db
    .select({ instance: workspaceInstances, workspace: workspaces })
    .from(workspaceInstances)
    .innerJoin(workspaces, eq(workspaces.id, workspaceInstances.workspaceId))
    .where(
      and(eq(workspaceInstances.agentTokenHash, hashAgentToken(token)), isNull(workspaceInstances.stoppedAt)),
    );
  if (!row)
    throw new Unauthenticated("agent_unauthorized", "agent token is unknown or its instance has ended");
  return row;
}
