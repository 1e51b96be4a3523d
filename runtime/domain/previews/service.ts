/**
 * Previews as resources: declare a port, close a declared one, share by link and revoke. Sharing and
 * revoking are audited with the change. Links and sign-in codes themselves are the preview proxy's
 * credentials (runtime/gateway/preview/tokens.ts).
 */
import { Conflict, NotFound } from "../../platform/errors.ts";
import type { PreviewRow } from "../../store/rows.ts";
import type { AuthorizedStore } from "../../store/store.ts";

/** The open preview of `port` (declaring a port already previewed changes nothing), or a new declared one. */
export async function declarePreview(
  scope: AuthorizedStore,
  workspaceId: string,
  port: number,
): Promise<{ preview: PreviewRow; created: boolean }> {
  return scope.previews.declare(workspaceId, port);
}

/**
 * Closes a declared preview of the workspace (a detected one closes when its server stops listening).
 * Returns its id as stored.
 */
export async function closePreview(
  scope: AuthorizedStore,
  workspaceId: string,
  previewId: string,
): Promise<string> {
  const workspace = await scope.workspaces.get(workspaceId);
  const { preview } = await scope.previews.get(previewId);
  if (preview.workspaceId !== workspace.id) throw new NotFound("preview");
  if (preview.source !== "declared") {
    throw new Conflict("preview_detected", "a detected preview closes when its server stops listening");
  }
  await scope.previews.close(preview.id);
  return preview.id;
}

/** Shares the preview by link; links are then minted for the returned row's share version. */
export async function sharePreview(
  scope: AuthorizedStore,
  previewId: string,
  options: { ttlSeconds: number; ip: string },
): Promise<PreviewRow> {
  const { preview } = await scope.previews.get(previewId);
  return scope.transaction(async (tx) => {
    const updated = await tx.previews.shareByLink(preview.id);
    await tx.audit({
      action: "preview.share",
      targetType: "preview",
      targetId: preview.id,
      ip: options.ip,
      details: { level: "link", ttlSeconds: options.ttlSeconds, shareVersion: updated.shareVersion },
    });
    return updated;
  });
}

/** Back to owner-only: every link and link cookie handed out so far stops working. Returns the stored id. */
export async function unsharePreview(scope: AuthorizedStore, previewId: string, ip: string): Promise<string> {
  const { preview } = await scope.previews.get(previewId);
  await scope.transaction(async (tx) => {
    await tx.previews.unshare(preview.id);
    await tx.audit({ action: "preview.unshare", targetType: "preview", targetId: preview.id, ip });
  });
  return preview.id;
}
