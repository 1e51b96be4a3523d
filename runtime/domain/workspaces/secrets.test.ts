import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { SecretBox } from "../../platform/secret-box.ts";
import { users } from "../../store/schema.ts";
import { readWorkspaceSecret, storeWorkspaceSecrets } from "../../store/secrets.ts";
import { useDatabase } from "../../test/database.ts";
import { insertWorkspace } from "../../test/fixtures.ts";

describe("workspace secrets", async () => {
  const { db, pool } = await useDatabase();
  const [owner] = await db.insert(users).values({ externalId: "user_secrets" }).returning();
  const ws = await insertWorkspace(db, owner!.id);
  const old = SecretBox.fromSpec(`old:${randomBytes(32).toString("base64")}`);

  it("stores sealed values and reads them back", async () => {
    await storeWorkspaceSecrets(db, old, ws!.id, { "restic-password": "first" });
    expect(await readWorkspaceSecret(db, old, ws!.id, "restic-password")).toBe("first");
    const { rows } = await pool.query("SELECT sealed FROM workspace_secrets WHERE workspace_id = $1", [
      ws!.id,
    ]);
    expect(rows[0].sealed.includes(Buffer.from("first"))).toBe(false);
  });

  it("replaces a stored value and re-seals it under the active key (rotation)", async () => {
    const rotated = SecretBox.fromSpec(`new:${randomBytes(32).toString("base64")}`);
    await storeWorkspaceSecrets(db, rotated, ws!.id, { "restic-password": "second" });
    expect(await readWorkspaceSecret(db, rotated, ws!.id, "restic-password")).toBe("second");
    const { rows } = await pool.query("SELECT key_id FROM workspace_secrets WHERE workspace_id = $1", [
      ws!.id,
    ]);
    expect(rows[0].key_id).toBe("new");
  });
});
