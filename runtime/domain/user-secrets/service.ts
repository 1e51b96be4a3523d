/**
 * The user's named secrets of a workspace: write-only (listed by name, never returned), every change
 * audited with the name only, delivered to the workspace's agent for the environment of new sessions.
 */
import { MAX_USER_SECRETS } from "../../../box/protocol.ts";
import { Conflict, NotFound } from "../../platform/errors.ts";
import type { AuthorizedStore } from "../../store/store.ts";
import type { UserSecretInfo } from "../../store/user-secrets.ts";

export function listUserSecrets(scope: AuthorizedStore, workspaceId: string): Promise<UserSecretInfo[]> {
  return scope.userSecrets.list(workspaceId);
}

/**
 * Stores (or replaces) one secret. Name and value were checked at the edge (protocol.ts `userSecretName`,
 * MAX_USER_SECRET_BYTES); a workspace holds at most MAX_USER_SECRETS.
 */
export async function putUserSecret(
  scope: AuthorizedStore,
  workspaceId: string,
  name: string,
  value: string,
  ip: string,
): Promise<{ created: boolean }> {
  return scope.transaction(async (tx) => {
    // Two new names written at once must not both pass the limit check (the agent refuses a larger set).
    await tx.userSecrets.lockSet(workspaceId);
    const existing = await tx.userSecrets.list(workspaceId);
    if (!existing.some((s) => s.name === name) && existing.length >= MAX_USER_SECRETS)
      throw new Conflict("secret_limit", `a workspace holds at most ${MAX_USER_SECRETS} secrets`);
    const { created } = await tx.userSecrets.put(workspaceId, name, value);
    await tx.audit({
      action: created ? "user_secret.create" : "user_secret.update",
      targetType: "workspace",
      targetId: workspaceId,
      ip,
      details: { name },
    });
    return { created };
  });
}

export async function deleteUserSecret(
  scope: AuthorizedStore,
  workspaceId: string,
  name: string,
  ip: string,
): Promise<void> {
  await scope.transaction(async (tx) => {
    if (!(await tx.userSecrets.remove(workspaceId, name))) throw new NotFound("secret");
    await tx.audit({
      action: "user_secret.delete",
      targetType: "workspace",
      targetId: workspaceId,
      ip,
      details: { name },
    });
  });
}
