/**
 * A workspace's long-lived secrets (ttyd credential, restic password), generated at creation and sealed at
 * rest. The per-instance agent token is not among them: it is minted per start and stored only as a hash.
 */
import { createHash, randomBytes } from "node:crypto";
import { and, eq, sql } from "drizzle-orm";
import type { SecretBox } from "../../platform/secret-box.ts";
import type { Db } from "../../store/client.ts";
import { workspaceSecrets } from "../../store/schema.ts";

export const WORKSPACE_SECRET_NAMES = ["ttyd-credential", "restic-password"] as const;
export type WorkspaceSecretName = (typeof WORKSPACE_SECRET_NAMES)[number];

const context = (workspaceId: string, name: string) => `workspace:${workspaceId}:${name}`;

export function generateWorkspaceSecrets(): Record<WorkspaceSecretName, string> {
  return {
    "ttyd-credential": `berth:${randomBytes(24).toString("base64url")}`,
    "restic-password": randomBytes(32).toString("base64url"),
  };
}

export async function storeWorkspaceSecrets(
  db: Pick<Db, "insert">,
  box: SecretBox,
  workspaceId: string,
  secrets: Record<string, string>,
): Promise<void> {
  const rows = Object.entries(secrets).map(([name, value]) => {
    const sealed = box.seal(value, context(workspaceId, name));
    return { workspaceId, name, keyId: sealed.keyId, sealed: sealed.sealed };
  });
  await db
    .insert(workspaceSecrets)
    .values(rows)
    .onConflictDoUpdate({
      target: [workspaceSecrets.workspaceId, workspaceSecrets.name],
      // `excluded` is the row being inserted: a re-seal (new value or rotated key) replaces the stored one.
      set: { keyId: sql`excluded.key_id`, sealed: sql`excluded.sealed`, updatedAt: new Date() },
    });
}

export async function readWorkspaceSecret(
  db: Db,
  box: SecretBox,
  workspaceId: string,
  name: string,
): Promise<string | null> {
  const [row] = await db
    .select()
    .from(workspaceSecrets)
    .where(and(eq(workspaceSecrets.workspaceId, workspaceId), eq(workspaceSecrets.name, name)));
  return row ? box.open({ keyId: row.keyId, sealed: row.sealed }, context(workspaceId, name)) : null;
}

/** Agent tokens are compared by hash: the database never holds one that could be replayed. */
export function hashAgentToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

export function generateAgentToken(): string {
  return `bat_${randomBytes(32).toString("base64url")}`;
}
