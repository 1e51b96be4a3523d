import { Unauthenticated } from "../../platform/errors.ts";
import { type AgentActor, agentActor, SYSTEM } from "../../store/actors.ts";
import type { InstanceRow, WorkspaceRow } from "../../store/rows.ts";
import type { AuthorizedStore, Store } from "../../store/store.ts";
import { hashAgentToken } from "../workspaces/secrets.ts";

export interface AuthenticatedAgent {
  actor: AgentActor;
  /** The store as this agent: its own instance and workspace, nothing else. */
  scope: AuthorizedStore;
  instance: InstanceRow;
  workspace: WorkspaceRow;
}

/**
 * Resolves an agent's bearer token to its open instance, looked up by hash (`system:auth`): the database
 * holds nothing an attacker could replay. A closed instance's token stops working with the VM's life.
 */
export async function authenticateAgent(
  store: Store,
  authorization: string | undefined,
): Promise<AuthenticatedAgent> {
  const token = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1];
  if (!token) throw new Unauthenticated("agent_unauthorized", "send 'Authorization: Bearer <agent token>'");
  const found = await store.as(SYSTEM.auth).agents.byTokenHash(hashAgentToken(token));
  if (!found)
    throw new Unauthenticated("agent_unauthorized", "agent token is unknown or its instance has ended");
  const actor = agentActor(found.instance);
  return { actor, scope: store.as(actor), ...found };
}
