/** A workspace named on the command line (by id or by name), and the plain table the client prints. */
import { type ApiClient, ClientError, Exit } from "./api.ts";

export interface WorkspaceSummary {
  id: string;
  name: string;
  state: string;
  createdAt: string;
}

/** A workspace by id or by name (an ambiguous name is refused). */
export async function findWorkspace(api: ApiClient, ref: string): Promise<WorkspaceSummary> {
  const { workspaces } = await api.call<{ workspaces: WorkspaceSummary[] }>("GET", "/api/v1/workspaces");
  const byId = workspaces.find((w) => w.id === ref);
  if (byId) return byId;
  const named = workspaces.filter((w) => w.name === ref);
  if (named.length === 1) return named[0]!;
  if (named.length > 1)
    throw new ClientError(Exit.USAGE, `more than one workspace is named '${ref}'; use its id`);
  throw new ClientError(Exit.NOT_FOUND, `no workspace '${ref}' (see 'berth ws list')`);
}

/** Rows as left-aligned columns; the first row is the header. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n")}\n`;
}
