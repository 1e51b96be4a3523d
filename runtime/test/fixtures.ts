import type { Db } from "../store/client.ts";
import type { WorkspaceRow } from "../store/rows.ts";
import { workspaces } from "../store/schema.ts";

/** A workspace row straight in the database, for tests about what sits on top of one (no build runs). */
export async function insertWorkspace(
  db: Db,
  ownerId: string,
  fields: Partial<typeof workspaces.$inferInsert> = {},
): Promise<WorkspaceRow> {
  const [row] = await db
    .insert(workspaces)
    .values({
      ownerId,
      name: "w",
      driver: "local",
      location: "local",
      serverType: "local",
      volumeSizeGb: 10,
      ...fields,
    })
    .returning();
  return row!;
}
