/**
 * The user's own named secrets of a workspace (store/schema.ts `user_secrets`), apart from the workspace's
 * infrastructure secrets (secrets.ts). Users write, replace, delete and list them by name; nobody reads a
 * value back except the workspace's own agent, which receives them to put into its sessions' environment.
 * Values are sealed with a context naming the table, the workspace and the name, so a sealed value moved to
 * another row (or into `workspace_secrets`) does not open.
 */
import { createHash } from "node:crypto";
import { and, asc, eq, sql } from "drizzle-orm";
import type { Access } from "./access.ts";
import { userSecrets } from "./schema.ts";

const context = (workspaceId: string, name: string) => `user-secret:${workspaceId}:${name}`;

export interface UserSecretInfo {
  name: string;
  createdAt: Date;
  updatedAt: Date;
}

export class UserSecretStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /** Names and times only: values never leave through this. */
  async list(workspaceId: string): Promise<UserSecretInfo[]> {
    await this.#access.requireWorkspace("user_secret.list", "workspace", workspaceId);
    return this.#access.db
      .select({ name: userSecrets.name, createdAt: userSecrets.createdAt, updatedAt: userSecrets.updatedAt })
      .from(userSecrets)
      .where(eq(userSecrets.workspaceId, workspaceId))
      .orderBy(asc(userSecrets.name));
  }

  /**
   * Serialises changes to one workspace's set until the transaction ends, so a check of the set (the
   * MAX_USER_SECRETS limit) still holds when the write commits. Call inside a transaction.
   */
  async lockSet(workspaceId: string): Promise<void> {
    await this.#access.requireWorkspace("user_secret.write", "workspace", workspaceId);
    await this.#access.db.execute(
      sql`SELECT pg_advisory_xact_lock(hashtextextended(${`user_secrets:${workspaceId}`}, 0))`,
    );
  }

  /** Seals and stores `value` under `name`; `created` tells a new name from a replaced one. */
  async put(workspaceId: string, name: string, value: string): Promise<{ created: boolean }> {
    await this.#access.requireWorkspace("user_secret.write", "workspace", workspaceId);
    const sealed = this.#access.secretBox.seal(value, context(workspaceId, name));
    const [row] = await this.#access.db
      .insert(userSecrets)
      .values({ workspaceId, name, keyId: sealed.keyId, sealed: sealed.sealed })
      .onConflictDoUpdate({
        target: [userSecrets.workspaceId, userSecrets.name],
        set: { keyId: sql`excluded.key_id`, sealed: sql`excluded.sealed`, updatedAt: new Date() },
      })
      // xmax is 0 for a freshly inserted row and the updating transaction's id for an upsert that updated.
      .returning({ inserted: sql<boolean>`(xmax = 0)` });
    return { created: Boolean(row?.inserted) };
  }

  /** Deletes one; false when there was no such secret. */
  async remove(workspaceId: string, name: string): Promise<boolean> {
    await this.#access.requireWorkspace("user_secret.write", "workspace", workspaceId);
    const gone = await this.#access.db
      .delete(userSecrets)
      .where(and(eq(userSecrets.workspaceId, workspaceId), eq(userSecrets.name, name)))
      .returning({ name: userSecrets.name });
    return gone.length > 0;
  }

  /**
   * A version of the agent's workspace's set, from names and change times only (no value, nothing sealed):
   * equal versions mean the agent already holds this set, so nothing is opened or sent.
   */
  async versionForAgent(): Promise<string> {
    this.#access.require("user_secret.deliver", "workspace");
    const { workspaceId } = this.#access.agent("workspace");
    const rows = await this.#access.db
      .select({ name: userSecrets.name, updatedAt: userSecrets.updatedAt })
      .from(userSecrets)
      .where(eq(userSecrets.workspaceId, workspaceId))
      .orderBy(asc(userSecrets.name));
    const digest = createHash("sha256");
    for (const r of rows) digest.update(`${r.name}\0${r.updatedAt.toISOString()}\n`);
    return `v1-${rows.length}-${digest.digest("hex").slice(0, 32)}`;
  }

  /** Every secret of the agent's own workspace, opened: what the agent puts into new sessions. */
  async forAgent(): Promise<Array<{ name: string; value: string }>> {
    this.#access.require("user_secret.deliver", "workspace");
    const { workspaceId } = this.#access.agent("workspace");
    const rows = await this.#access.db
      .select()
      .from(userSecrets)
      .where(eq(userSecrets.workspaceId, workspaceId))
      .orderBy(asc(userSecrets.name));
    return rows.map((r) => ({
      name: r.name,
      value: this.#access.secretBox.open({ keyId: r.keyId, sealed: r.sealed }, context(workspaceId, r.name)),
    }));
  }
}
