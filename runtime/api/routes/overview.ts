/**
 * `GET /api/v1/overview`: what the web client needs to explain this control plane to its user, and no
 * more: which driver realizes workspaces (the local driver ignores Hetzner's server type and location,
 * so a card must not show them), the machine local workspaces share, and the per-user workspace limit
 * (so the dashboard can say why it offers no create form before the user tries). Nothing per user is read
 * here: the client counts its own workspaces from the list it already has.
 */
import { statfs } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import { z } from "zod";
import type { ApiRouter, AppDeps } from "../context.ts";
import { doc } from "../openapi/doc.ts";

const Overview = z.object({
  driver: z.object({
    name: z.string(),
    host: z
      .object({
        cpus: z.number().int(),
        memoryBytes: z.number(),
        diskTotalBytes: z.number().nullable(),
        diskFreeBytes: z.number().nullable(),
      })
      .optional()
      .describe("local driver only: the machine workspaces share"),
  }),
  limits: z.object({ workspacesPerUser: z.number().int() }),
});

export function overviewRoutes(router: ApiRouter, deps: AppDeps): void {
  const overviewDoc = doc({ summary: "The driver, its host and your limits", responses: { 200: Overview } });
  router.get("/api/v1/overview", overviewDoc, async (ctx) => {
    const { config, driver } = deps;
    const local = driver.name === "local";
    let disk: { diskTotalBytes: number | null; diskFreeBytes: number | null } = {
      diskTotalBytes: null,
      diskFreeBytes: null,
    };
    if (local) {
      const fs = await statfs(config.dataDir).catch(() => null);
      if (fs) disk = { diskTotalBytes: fs.blocks * fs.bsize, diskFreeBytes: fs.bavail * fs.bsize };
    }
    ctx.set("Cache-Control", "no-cache");
    ctx.body = {
      driver: {
        name: driver.name,
        ...(local ? { host: { cpus: availableParallelism(), memoryBytes: totalmem(), ...disk } } : {}),
      },
      limits: { workspacesPerUser: config.workspaceDefaults.maxPerUser },
    };
  });
}
