/**
 * Serves the built web client (runtime/web/dist): index.html never cached (it names the current assets),
 * hashed assets cached for a year as immutable. The pages are public; every byte of data behind them
 * comes from /api/v1, which requires a session.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { send } from "@koa/send";
import type { ApiRouter } from "../context.ts";
import { HttpError } from "../errors.ts";

export const WEB_DIST = fileURLToPath(new URL("../../web/dist", import.meta.url));

const PWA_FILES: Record<string, string> = {
  "sw.js": "text/javascript; charset=utf-8",
  "manifest.webmanifest": "application/manifest+json",
  "icon-192.png": "image/png",
  "icon-512.png": "image/png",
  "icon-maskable-512.png": "image/png",
  "apple-touch-icon.png": "image/png",
};

export function webRoutes(router: ApiRouter, distDir = WEB_DIST): void {
  router.get("/", async (ctx) => {
    if (!existsSync(join(distDir, "index.html"))) {
      throw new HttpError(503, "web_not_built", "the web client is not built; `npm start` builds it");
    }
    ctx.set("Cache-Control", "no-cache");
    await send(ctx, "index.html", { root: distDir });
  });

  // The PWA's fixed-name files (runtime/web/public): revalidated on every load, so an update reaches
  // the installed app; the service worker must sit at the root to control every page.
  for (const [file, type] of Object.entries(PWA_FILES)) {
    router.get(`/${file}`, async (ctx) => {
      if (!existsSync(join(distDir, file))) throw new HttpError(404, "not_found", "no such file");
      ctx.set("Cache-Control", "no-cache");
      await send(ctx, file, { root: distDir });
      ctx.type = type;
    });
  }

  router.get("/assets/:file", async (ctx) => {
    // One path segment of hashed names only: nothing outside dist/assets is reachable.
    if (!/^[A-Za-z0-9._-]+$/.test(ctx.params.file!)) throw new HttpError(404, "not_found", "no such asset");
    try {
      await send(ctx, `assets/${ctx.params.file}`, {
        root: distDir,
        maxage: 365 * 24 * 3600 * 1000,
        immutable: true,
      });
    } catch {
      throw new HttpError(404, "not_found", "no such asset");
    }
  });
}
