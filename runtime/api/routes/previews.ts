/**
 * Previews as resources: list (detected and declared), declare a port, close a declared one, share by
 * link and revoke, and open on the preview's own host through a one-time code. The proxy itself is
 * runtime/gateway/preview/.
 */
import { z } from "zod";
import { closePreview, declarePreview, sharePreview, unsharePreview } from "../../domain/previews/service.ts";
import type { PreviewGateway } from "../../gateway/preview/gateway.ts";
import {
  BOX_SERVICE_PORTS,
  isDeclarablePort,
  PREVIEW_PORT_MAX,
  PREVIEW_PORT_MIN,
} from "../../gateway/preview/port-policy.ts";
import { PATH_PREFIX, previewHostOrigin, safeNext } from "../../gateway/preview/request.ts";
import {
  CODE_TTL_SECONDS,
  LINK_DEFAULT_TTL_SECONDS,
  LINK_MAX_TTL_SECONDS,
} from "../../gateway/preview/tokens.ts";
import type { PreviewRow } from "../../store/rows.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { HttpError, parseInput } from "../errors.ts";
import { doc, timestamp } from "../openapi/doc.ts";

const declareBody = z
  .object({
    port: z
      .number()
      .int()
      .refine(isDeclarablePort, {
        message: `must be ${PREVIEW_PORT_MIN}-${PREVIEW_PORT_MAX}, except the box's own ports (${[...BOX_SERVICE_PORTS].join(", ")})`,
      }),
  })
  .strict();

const shareBody = z
  .object({ ttlSeconds: z.number().int().min(60).max(LINK_MAX_TTL_SECONDS).optional() })
  .strict();

const openBody = z.object({ path: z.string().max(2048).optional() }).strict();

export const Preview = z.object({
  id: z.string(),
  workspaceId: z.string(),
  port: z.number().int(),
  source: z.enum(["detected", "declared"]),
  process: z.string().nullable(),
  framework: z.string().nullable(),
  share: z.enum(["owner", "link"]),
  createdAt: timestamp,
  pathUrl: z.string().describe("the preview under this API's origin; POST …/open for its own host"),
  proxied: z.boolean().describe("false for a port the proxy refuses (outside the declarable range)"),
});

export function previewRoutes(router: ApiRouter, deps: AppDeps, gateway: PreviewGateway): void {
  // Codes and links are credentials: minting is rate-limited per user, across replicas (DESIGN.md §7).
  const minting = deps.store.rateLimiter({ name: "preview-token", points: 120, durationSeconds: 60 });
  const domain = () => {
    const d = deps.config.previewDomain;
    if (!d)
      throw new HttpError(
        409,
        "preview_domain_unset",
        "previews have no host of their own: set BERTH_PREVIEW_DOMAIN",
      );
    return d;
  };
  // The triggers' NOTIFY reaches every replica within milliseconds; this one must not lag its own write.
  const dropCached = (previewId: string) => gateway.routes.invalidate(`p:${previewId}`);
  const present = (p: PreviewRow): z.input<typeof Preview> => ({
    id: p.id,
    workspaceId: p.workspaceId,
    port: p.port,
    source: p.source,
    process: p.process,
    framework: p.framework,
    share: p.share,
    createdAt: p.createdAt,
    /** Path form on the API's origin; `hostUrl` (own origin, preferred for apps assuming `/`) needs `POST …/open`. */
    pathUrl: `${deps.publicUrl}${PATH_PREFIX}${p.id}/`,
    proxied: isDeclarablePort(p.port),
  });

  const listDoc = doc({
    summary: "A workspace's previews (detected dev servers and declared ports)",
    responses: { 200: z.object({ previews: z.array(Preview) }) },
    errors: [404],
  });
  router.get("/api/v1/workspaces/:id/previews", listDoc, async (ctx) => {
    ctx.body = { previews: (await ctx.state.scope.previews.listOf(ctx.params.id!)).map(present) };
  });

  const one = z.object({ preview: Preview });
  const declareDoc = doc({
    summary: "Declare a port as a preview (200 if it already was)",
    body: declareBody,
    responses: { 200: one, 201: one },
    errors: [404, 409],
  });
  router.post("/api/v1/workspaces/:id/previews", declareDoc, async (ctx) => {
    const { port } = parseInput(declareBody, ctx.request.body ?? {});
    const { preview, created } = await declarePreview(ctx.state.scope, ctx.params.id!, port);
    if (created) ctx.status = 201;
    ctx.body = { preview: present(preview) };
  });

  const closeDoc = doc({ summary: "Close a declared preview", responses: { 204: null }, errors: [404, 409] });
  router.delete("/api/v1/workspaces/:id/previews/:previewId", closeDoc, async (ctx) => {
    dropCached(await closePreview(ctx.state.scope, ctx.params.id!, ctx.params.previewId!));
    ctx.status = 204;
  });

  const shareDoc = doc({
    summary: "Share a preview by link (anyone with the link, until it expires or is revoked)",
    body: shareBody,
    responses: { 201: z.object({ share: z.literal("link"), url: z.string(), expiresAt: z.iso.datetime() }) },
    errors: [404, 409],
  });
  router.post("/api/v1/previews/:id/share", shareDoc, async (ctx) => {
    const { ttlSeconds = LINK_DEFAULT_TTL_SECONDS } = parseInput(shareBody, ctx.request.body ?? {});
    // Someone else's preview is a 404 before anything else is looked at.
    await ctx.state.scope.previews.get(ctx.params.id!);
    const d = domain();
    await minting(ctx.state.actor.userId);
    const row = await sharePreview(ctx.state.scope, ctx.params.id!, { ttlSeconds, ip: ctx.ip });
    dropCached(row.id);
    const token = await gateway.tokens.mintLink(row.id, row.shareVersion, ttlSeconds);
    ctx.set("Cache-Control", "no-store");
    ctx.status = 201;
    ctx.body = {
      share: "link",
      url: `${previewHostOrigin(deps.publicUrl, d, row.id)}/__berth/link?t=${token}`,
      expiresAt: new Date(Date.now() + ttlSeconds * 1000).toISOString(),
    };
  });

  const unshareDoc = doc({
    summary: "Revoke every share link of a preview",
    responses: { 204: null },
    errors: [404],
  });
  router.delete("/api/v1/previews/:id/share", unshareDoc, async (ctx) => {
    dropCached(await unsharePreview(ctx.state.scope, ctx.params.id!, ctx.ip));
    ctx.status = 204;
  });

  /** A URL that signs the caller into the preview's own host: valid once, for 60 s. */
  const openDoc = doc({
    summary: "A one-time URL that opens the preview on its own host",
    body: openBody,
    responses: { 200: z.object({ url: z.string(), expiresInSeconds: z.number().int() }) },
    errors: [404, 409],
  });
  router.post("/api/v1/previews/:id/open", openDoc, async (ctx) => {
    const { path } = parseInput(openBody, ctx.request.body ?? {});
    const { preview } = await ctx.state.scope.previews.get(ctx.params.id!);
    const d = domain();
    await minting(ctx.state.actor.userId);
    const code = await gateway.tokens.issueCode(ctx.state.scope.previews, preview.id);
    const next = encodeURIComponent(safeNext(path ?? "/"));
    ctx.set("Cache-Control", "no-store");
    ctx.body = {
      url: `${previewHostOrigin(deps.publicUrl, d, preview.id)}/__berth/auth?code=${code}&next=${next}`,
      expiresInSeconds: CODE_TTL_SECONDS,
    };
  });
}
