/**
 * A workspace's long-lived secrets (ttyd credential, restic password), generated at creation and sealed at
 * rest by the store (store/secrets.ts). The per-instance agent token is not among them: it is minted per
 * start and stored only as a hash.
 */
import { createHash, randomBytes } from "node:crypto";

export const WORKSPACE_SECRET_NAMES = ["ttyd-credential", "restic-password"] as const;
export type WorkspaceSecretName = (typeof WORKSPACE_SECRET_NAMES)[number];

export function generateWorkspaceSecrets(): Record<WorkspaceSecretName, string> {
  return {
    "ttyd-credential": `berth:${randomBytes(24).toString("base64url")}`,
    "restic-password": randomBytes(32).toString("base64url"),
  };
}

/** Agent tokens are compared by hash: the database never holds one that could be replayed. */
export function hashAgentToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

export function generateAgentToken(): string {
  return `bat_${randomBytes(32).toString("base64url")}`;
}
