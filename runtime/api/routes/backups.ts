/**
 * Backups of a workspace: list runs and snapshots, back up now, browse a snapshot, restore (whole or chosen
 * paths), and export a snapshot as `.tar.gz` (served from the repository by the control plane itself, so
 * it works while the box is hibernated). Someone else's workspace or snapshot is a 404 like a missing one.
 */
import { z } from "zod";
import { NotFound } from "../../platform/errors.ts";
import type { BackupRow } from "../../store/rows.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";

/** The client's view of a run: no repository location, no credentials. */
export function presentBackup(b: BackupRow) {
  return {
    id: b.id,
    trigger: b.trigger,
    status: b.status,
    progress: b.progress,
    snapshotId: b.snapshotId,
    bytesAdded: b.bytesAdded,
    files: b.files,
    durationMs: b.durationMs,
    error: b.error,
    createdAt: b.createdAt,
    finishedAt: b.finishedAt,
  };
}

const restoreBody = z
  .object({
    /** Empty or absent: the whole of `user/`. */
    paths: z.array(z.string().min(1).max(1024)).max(100).default([]),
  })
  .strict();

export function backupRoutes(router: ApiRouter, deps: AppDeps): void {
  router.get("/api/v1/workspaces/:id/backups", async (ctx) => {
    const { runs, snapshots, repositoryError } = await deps.backups.list(ctx.state.scope, ctx.params.id!);
    ctx.body = { runs: runs.map(presentBackup), snapshots, repositoryError };
  });

  router.post("/api/v1/workspaces/:id/backups", async (ctx) => {
    const row = await deps.backups.requestBackup(ctx.state.scope, ctx.params.id!, ctx.ip);
    ctx.status = 202;
    ctx.body = { backup: presentBackup(row) };
  });

  router.get("/api/v1/workspaces/:id/backups/runs/:run", async (ctx) => {
    const row = await ctx.state.scope.backups.find(ctx.params.id!, ctx.params.run!);
    if (!row) throw new NotFound("backup");
    ctx.body = { backup: presentBackup(row) };
  });

  router.get("/api/v1/workspaces/:id/backups/:snapshot/files", async (ctx) => {
    const files = await deps.backups.browse(ctx.state.scope, ctx.params.id!, ctx.params.snapshot!);
    ctx.body = { files };
  });

  router.post("/api/v1/workspaces/:id/backups/:snapshot/restore", async (ctx) => {
    const { paths } = parseInput(restoreBody, ctx.request.body ?? {});
    const row = await deps.backups.restore(
      ctx.state.scope,
      ctx.params.id!,
      ctx.params.snapshot!,
      paths,
      ctx.ip,
    );
    ctx.status = 202;
    ctx.body = { safetyBackup: presentBackup(row) };
  });

  router.get("/api/v1/workspaces/:id/backups/:snapshot/export", async (ctx) => {
    const { filename, stream } = await deps.backups.export(
      ctx.state.scope,
      ctx.params.id!,
      ctx.params.snapshot!,
      ctx.ip,
    );
    ctx.set("content-type", "application/gzip");
    ctx.set("content-disposition", `attachment; filename="${filename}"`);
    ctx.body = stream;
  });
}
