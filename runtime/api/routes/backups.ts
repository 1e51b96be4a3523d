/**
 * Backups of a workspace: list runs and snapshots, back up now, browse a snapshot, restore (whole or chosen
 * paths), and export a snapshot as `.tar.gz` (served from the repository by the control plane itself, so
 * it works while the box is hibernated). Someone else's workspace or snapshot is a 404 like a missing one.
 */
import { z } from "zod";
import { BACKUP_TRIGGERS } from "../../../box/protocol.ts";
import { NotFound } from "../../platform/errors.ts";
import type { BackupRow } from "../../store/rows.ts";
import { BACKUP_STATUSES } from "../../store/rows.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";
import { doc, timestamp } from "../openapi/doc.ts";

/** One backup run (a restore's safety snapshot included), as `presentBackup` shows it. */
export const Backup = z.object({
  id: z.string(),
  trigger: z.enum(BACKUP_TRIGGERS),
  status: z.enum(BACKUP_STATUSES),
  progress: z.number().nullable().describe("0..1 while running"),
  snapshotId: z.string().nullable().describe("the restic snapshot it made, once it succeeded"),
  bytesAdded: z.number().nullable(),
  files: z.number().nullable(),
  durationMs: z.number().nullable(),
  error: z.string().nullable(),
  createdAt: timestamp,
  finishedAt: timestamp.nullable(),
});

/** A snapshot in the workspace's repository (domain/backups/service.ts `SnapshotView`). */
export const Snapshot = z.object({
  id: z.string(),
  shortId: z.string(),
  time: z.string().describe("when restic took it, as restic reports it (RFC 3339)"),
  tags: z.array(z.string()),
  trigger: z.string().nullable().describe("from the run that made it, or its trigger: tag"),
  bytesAdded: z.number().nullable(),
  files: z.number().nullable(),
});

/** One entry of a snapshot, its path relative to the workspace root (`user/…`, `system/state/…`). */
export const SnapshotFile = z.object({
  path: z.string(),
  type: z.enum(["file", "dir", "symlink", "other"]),
  size: z.number(),
  mtime: z.string().describe("as restic reports it; empty when unknown"),
});

/** The client's view of a run: no repository location, no credentials. */
export function presentBackup(b: BackupRow): z.input<typeof Backup> {
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
  const listDoc = doc({
    summary: "A workspace's backup runs and the snapshots in its repository, newest first",
    responses: {
      200: z.object({
        runs: z.array(Backup),
        snapshots: z.array(Snapshot),
        repositoryError: z
          .string()
          .nullable()
          .describe("why the repository could not be read (the runs are still listed)"),
      }),
    },
    errors: [404],
  });
  router.get("/api/v1/workspaces/:id/backups", listDoc, async (ctx) => {
    const { runs, snapshots, repositoryError } = await deps.backups.list(ctx.state.scope, ctx.params.id!);
    ctx.body = { runs: runs.map(presentBackup), snapshots, repositoryError };
  });

  const one = z.object({ backup: Backup });
  const requestDoc = doc({
    summary: "Back up now (the workspace must be running); the run is followed through …/backups/runs/:run",
    responses: { 202: one },
    errors: [404, 409],
  });
  router.post("/api/v1/workspaces/:id/backups", requestDoc, async (ctx) => {
    const row = await deps.backups.requestBackup(ctx.state.scope, ctx.params.id!, ctx.ip);
    ctx.status = 202;
    ctx.body = { backup: presentBackup(row) };
  });

  const runDoc = doc({ summary: "One backup run", responses: { 200: one }, errors: [404] });
  router.get("/api/v1/workspaces/:id/backups/runs/:run", runDoc, async (ctx) => {
    const row = await ctx.state.scope.backups.find(ctx.params.id!, ctx.params.run!);
    if (!row) throw new NotFound("backup");
    ctx.body = { backup: presentBackup(row) };
  });

  const filesDoc = doc({
    summary: "The files of a snapshot",
    responses: { 200: z.object({ files: z.array(SnapshotFile) }) },
    errors: [404, 503],
  });
  router.get("/api/v1/workspaces/:id/backups/:snapshot/files", filesDoc, async (ctx) => {
    const files = await deps.backups.browse(ctx.state.scope, ctx.params.id!, ctx.params.snapshot!);
    ctx.body = { files };
  });

  const restoreDoc = doc({
    summary: "Restore a snapshot, whole (all of user/) or chosen paths; a safety snapshot is taken first",
    body: restoreBody,
    responses: { 202: z.object({ safetyBackup: Backup.describe("the pre-restore run") }) },
    errors: [404, 409, 503],
  });
  router.post("/api/v1/workspaces/:id/backups/:snapshot/restore", restoreDoc, async (ctx) => {
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

  const exportDoc = doc({
    summary: "Download a snapshot as .tar.gz (works while the workspace is hibernated)",
    responses: { 200: "application/gzip" },
    errors: [404, 503],
  });
  router.get("/api/v1/workspaces/:id/backups/:snapshot/export", exportDoc, async (ctx) => {
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
