/**
 * A workspace's sealed secrets (ttyd credential, restic password, the driver's secret outputs), AES-256-GCM
 * sealed by the secret box and bound to their workspace and name, so a sealed value moved to another row
 * does not open.
 */
import { and, eq, sql } from "drizzle-orm";
import type { SecretBox } from "../platform/secret-box.ts";
import type { Access } from "./access.ts";
import type { Executor } from "./client.ts";
import { workspaceSecrets } from "./schema.ts";

const context = (workspaceId: string, name: string) => `workspace:${workspaceId}:${name}`;

/** Seals and stores (or replaces) secrets of a workspace. Unchecked: authorized callers and fixtures only. */
export async function storeWorkspaceSecrets(
  db: Pick<Executor, "insert">,
  secretBox: SecretBox,
  workspaceId: string,
  secrets: Record<string, string>,
): Promise<void> {
  const rows = Object.entries(secrets).map(([name, value]) => {
    const sealed = secretBox.seal(value, context(workspaceId, name));
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

/** Opens one secret of a workspace, or null. Unchecked: authorized callers and fixtures only. */
export async function readWorkspaceSecret(
  db: Executor,
  secretBox: SecretBox,
  workspaceId: string,
  name: string,
): Promise<string | null> {
  const [row] = await db
    .select()
    .from(workspaceSecrets)
    .where(and(eq(workspaceSecrets.workspaceId, workspaceId), eq(workspaceSecrets.name, name)));
  return row ? secretBox.open({ keyId: row.keyId, sealed: row.sealed }, context(workspaceId, name)) : null;
}

export class SecretStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /** Any secret of a workspace: what the build worker and operators hand to the driver. */
  async read(workspaceId: string, name: string): Promise<string | null> {
    await this.#access.requireWorkspace("secret.read", "workspace", workspaceId);
    return readWorkspaceSecret(this.#access.db, this.#access.secretBox, workspaceId, name);
  }

  /**
   * The box's terminal credential, for whoever may connect to the box: the relay on its user's behalf,
   * the health probes, the agent proving its tailnet address. Never handed to a client.
   */
  async terminalCredential(workspaceId: string): Promise<string | null> {
    await this.#access.requireWorkspace("workspace.connect", "workspace", workspaceId);
    return readWorkspaceSecret(this.#access.db, this.#access.secretBox, workspaceId, "ttyd-credential");
  }

  async store(workspaceId: string, secrets: Record<string, string>): Promise<void> {
    await this.#access.requireWorkspace("secret.write", "workspace", workspaceId);
    await storeWorkspaceSecrets(this.#access.db, this.#access.secretBox, workspaceId, secrets);
  }
}
