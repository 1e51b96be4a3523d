/**
 * Backups of a workspace: the box agent runs restic (asked through agent actions, reporting through agent
 * events); the control plane records every run as a `backups` row, counts them, and reads the repository
 * itself to list, browse and export snapshots, so export works while the box is hibernated. The repository
 * password is the workspace's sealed `restic-password`, opened only as `system:backups` and handed to
 * restic through its environment (box/backups/restic.ts).
 *
 * Triggers: on demand (`requestBackup`), nightly (`nightlyTick`, once per workspace and UTC night through
 * the unique nightly row, spread over a window by a hash of the workspace id), and before every hibernate
 * and destroy (`backupBeforeStop`, best effort within a budget: the stop goes on whatever happens).
 */
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { createGzip } from "node:zlib";
import { Restic, ResticError, type Snapshot, type SnapshotNode } from "../../../box/backups/restic.ts";
import { type BackupPayload, RESTORE_PATH_RE } from "../../../box/protocol.ts";
import type { WorkspaceDriver } from "../../../stacks/driver.ts";
import { Conflict, Invalid, NotFound, Unavailable } from "../../platform/errors.ts";
import type { Logger } from "../../platform/logger.ts";
import type { Metrics } from "../../platform/metrics.ts";
import { SYSTEM } from "../../store/actors.ts";
import type { BackupRow } from "../../store/rows.ts";
import type { AuthorizedStore, Store } from "../../store/store.ts";

export interface BackupServiceOptions {
  store: Store;
  driver: Pick<WorkspaceDriver, "backupRepository">;
  metrics: Metrics;
  log: Logger;
  /** The nightly window (UTC): runs start between `startHour` and `startHour + hours`. */
  nightlyWindow?: { startHour: number; hours: number };
  /** How often `backupBeforeStop` looks at its row. */
  pollMs?: number;
  /** Retries of the control plane's own restic reads (interactive: short). */
  retry?: { attempts: number; baseMs: number; maxMs: number };
}

export interface SnapshotView {
  id: string;
  shortId: string;
  time: string;
  tags: string[];
  /** From the run that made it, when the control plane recorded one. */
  trigger: string | null;
  bytesAdded: number | null;
  files: number | null;
}

const DAY_MS = 24 * 3600_000;

export class BackupService {
  readonly #o: Required<BackupServiceOptions>;
  readonly #system: AuthorizedStore;

  constructor(options: BackupServiceOptions) {
    this.#o = {
      nightlyWindow: { startHour: 1, hours: 4 },
      pollMs: 250,
      retry: { attempts: 2, baseMs: 1_000, maxMs: 2_000 },
      ...options,
    };
    this.#system = options.store.as(SYSTEM.backups);
  }

  /** On demand: the owner asks; the box runs it. The workspace must be running. */
  async requestBackup(scope: AuthorizedStore, workspaceId: string, ip?: string): Promise<BackupRow> {
    const workspace = await scope.workspaces.get(workspaceId);
    if (workspace.state !== "ready")
      throw new Conflict(
        "workspace_not_running",
        `a backup runs on the box, which is ${workspace.state}; wake it first (export works while hibernated)`,
      );
    const run = await scope.backups.request(workspaceId, "manual");
    await scope.audit({
      action: "backup.request",
      targetType: "workspace",
      targetId: workspaceId,
      ip: ip ?? null,
      details: { backupId: run!.backup.id },
    });
    return run!.backup;
  }

  /** The recorded runs and the repository's snapshots, newest first. */
  async list(
    scope: AuthorizedStore,
    workspaceId: string,
  ): Promise<{ runs: BackupRow[]; snapshots: SnapshotView[]; repositoryError: string | null }> {
    const runs = await scope.backups.list(workspaceId);
    let snapshots: Snapshot[] = [];
    let repositoryError: string | null = null;
    try {
      snapshots = await (await this.#restic(workspaceId)).snapshots();
    } catch (err) {
      // No backup yet (no repository), or the storage is down: the rows still show what happened.
      if (!(err instanceof ResticError && err.failure === "repository-missing"))
        repositoryError = (err as Error).message;
    }
    const bySnapshot = new Map(runs.filter((r) => r.snapshotId).map((r) => [r.snapshotId!, r]));
    const views = snapshots
      .map((s) => {
        const run = bySnapshot.get(s.id);
        return {
          id: s.id,
          shortId: s.shortId,
          time: s.time,
          tags: s.tags,
          trigger: run?.trigger ?? s.tags.find((t) => t.startsWith("trigger:"))?.slice(8) ?? null,
          bytesAdded: run?.bytesAdded ?? null,
          files: run?.files ?? null,
        };
      })
      .sort((a, b) => b.time.localeCompare(a.time));
    return { runs, snapshots: views, repositoryError };
  }

  /** The files of a snapshot, paths relative to the workspace root (`user/...`, `system/state/...`). */
  async browse(scope: AuthorizedStore, workspaceId: string, snapshot: string): Promise<SnapshotNode[]> {
    const { restic, id } = await this.#snapshot(scope, workspaceId, snapshot);
    // Snapshots are rooted at the workspace root: `/user/...`, `/system/state/...`.
    return (await restic.ls(id)).map((n) => ({ ...n, path: n.path.replace(/^\/+/, "") }));
  }

  /**
   * Restore: whole (`paths` empty: all of `user/`) or chosen paths. Every path is checked before anything
   * is asked of the box; a bad one is refused by name.
   */
  async restore(
    scope: AuthorizedStore,
    workspaceId: string,
    snapshot: string,
    paths: string[],
    ip?: string,
  ): Promise<BackupRow> {
    const workspace = await scope.workspaces.get(workspaceId); // someone else's: NotFound before anything
    const clean = paths.map((p) => p.replace(/\/+$/, ""));
    const bad = clean.find((p) => !RESTORE_PATH_RE.test(p));
    if (bad !== undefined)
      throw new Invalid(
        "invalid_path",
        `paths: ${JSON.stringify(bad)} is outside the workspace layout (restorable: user/ and below)`,
        { path: bad },
      );
    const { id } = await this.#snapshot(scope, workspaceId, snapshot);
    if (workspace.state !== "ready")
      throw new Conflict("workspace_not_running", `a restore runs on the box, which is ${workspace.state}`);
    const run = await scope.backups.requestRestore(workspaceId, id, clean);
    await scope.audit({
      action: "backup.restore",
      targetType: "workspace",
      targetId: workspaceId,
      ip: ip ?? null,
      details: { snapshot: id, paths: clean, safetyBackupId: run.backup.id },
    });
    return run.backup;
  }

  /** The snapshot as a `.tar.gz` stream, read by the control plane itself (the box may be hibernated). */
  async export(
    scope: AuthorizedStore,
    workspaceId: string,
    snapshot: string,
    ip?: string,
  ): Promise<{ filename: string; stream: Readable; done: Promise<void> }> {
    const { restic, id } = await this.#snapshot(scope, workspaceId, snapshot);
    await scope.audit({
      action: "backup.export",
      targetType: "workspace",
      targetId: workspaceId,
      ip: ip ?? null,
      details: { snapshot: id },
    });
    // A client that goes away mid-download destroys the body (Koa): restic must go too, or it blocks on a
    // full pipe forever, holding its repository lock (which keeps the nightly prune out).
    const abort = new AbortController();
    const dump = restic.dumpTar(id, abort.signal);
    const gzip = createGzip();
    dump.stream.pipe(gzip);
    let ended = false;
    dump.done.then(
      () => {
        ended = true;
      },
      (err: Error) => {
        ended = true;
        if (abort.signal.aborted) return;
        this.#o.log.warn({ workspaceId, snapshot: id, err: err.message }, "export failed mid-stream");
        gzip.destroy(err);
      },
    );
    gzip.once("close", () => {
      if (!ended && !gzip.readableEnded) abort.abort();
    });
    return { filename: `${workspaceId}-${id.slice(0, 8)}.tar.gz`, stream: gzip, done: dump.done };
  }

  /**
   * Before a hibernate or destroy: asks the box for a backup and waits up to `budgetMs` for it. Never
   * throws: a box that is not up, a failed run or a run past its budget is recorded as failed, the owner
   * is told, and the stop goes on. The build worker calls it; so may autostop.
   */
  async backupBeforeStop(
    workspaceId: string,
    budgetMs: number,
    log?: (line: string) => void,
  ): Promise<BackupRow | null> {
    try {
      if (!(await this.#system.backups.hasLiveAgent(workspaceId))) {
        log?.("no running box to back up; skipping the pre-stop backup");
        await this.#failLeftovers(workspaceId);
        return null;
      }
      const run = await this.#system.backups.request(workspaceId, "pre-stop");
      if (!run) return null;
      await this.#auditSystem(workspaceId, run.backup);
      log?.(`pre-stop backup requested (up to ${Math.round(budgetMs / 1000)} s)`);
      const deadline = Date.now() + budgetMs;
      let row = run.backup;
      while (row.status === "pending" || row.status === "running") {
        if (Date.now() >= deadline) {
          const failed = await this.#system.backups.failRun(
            row.id,
            `did not finish within ${Math.round(budgetMs / 1000)} s before the stop`,
          );
          if (failed) await this.finished(this.#system, failed);
          row = failed ?? row;
          break;
        }
        await new Promise((r) => setTimeout(r, this.#o.pollMs));
        row = (await this.#system.backups.find(workspaceId, row.id)) ?? row;
      }
      log?.(
        row.status === "succeeded"
          ? "pre-stop backup done"
          : `pre-stop backup failed (${row.error ?? "unknown"}); stopping anyway`,
      );
      await this.#failLeftovers(workspaceId);
      return row;
    } catch (err) {
      this.#o.log.warn(
        { workspaceId, err: (err as Error).message },
        "pre-stop backup could not be asked for",
      );
      log?.(`pre-stop backup could not be asked for: ${(err as Error).message}; stopping anyway`);
      return null;
    }
  }

  /**
   * The nightly job (every few minutes through the job system, on any replica): each running workspace
   * whose slot in tonight's window has come gets one `nightly` run. The unique nightly row makes a second
   * replica's identical tick a no-op. Returns how many runs this call created.
   */
  async nightlyTick(now = new Date()): Promise<number> {
    const { startHour, hours } = this.#o.nightlyWindow;
    const night = new Date(now.getTime() - startHour * 3600_000).toISOString().slice(0, 10);
    const windowStart = Date.parse(`${night}T00:00:00Z`) + startHour * 3600_000;
    let created = 0;
    for (const workspaceId of await this.#system.backups.withLiveBox()) {
      const slot = windowStart + nightlySlotMs(workspaceId, hours * 3600_000);
      if (now.getTime() < slot || now.getTime() >= windowStart + DAY_MS) continue;
      const run = await this.#system.backups.request(workspaceId, "nightly", { night });
      if (!run) continue;
      await this.#auditSystem(workspaceId, run.backup);
      created++;
    }
    return created;
  }

  /** Updates the gauge of workspaces with no successful backup in 36 h. */
  async refreshStaleGauge(now = new Date()): Promise<number> {
    const n = await this.#system.backups.countWithoutSuccessSince(new Date(now.getTime() - 36 * 3600_000));
    this.#o.metrics.backupStaleWorkspaces.set(n);
    return n;
  }

  /** A run just finished: counted, and a failure is notified. `scope` is the agent's or system:backups. */
  async finished(scope: AuthorizedStore, row: BackupRow): Promise<void> {
    const m = this.#o.metrics;
    const result = row.status === "succeeded" ? "succeeded" : "failed";
    m.backupRuns.inc({ trigger: row.trigger, result });
    if (row.durationMs !== null)
      m.backupDuration.observe({ trigger: row.trigger, result }, row.durationMs / 1000);
    if (result === "succeeded" && row.bytesAdded !== null)
      m.backupBytesAdded.observe({ trigger: row.trigger }, row.bytesAdded);
    if (result === "failed") {
      const n = {
        kind: "backup_failed",
        title: "Backup failed",
        body: `The ${row.trigger} backup failed: ${row.error ?? "unknown error"}`.slice(0, 2000),
        dedupeKey: `backup-${row.id}`,
      };
      await notify(scope, row.workspaceId, n);
    }
  }

  /** A restore finished on the box: the owner is told either way. */
  async restoreFinished(scope: AuthorizedStore, workspaceId: string, p: BackupPayload): Promise<void> {
    const ok = p.phase === "succeeded";
    await notify(scope, workspaceId, {
      kind: ok ? "restore_done" : "restore_failed",
      title: ok ? "Restore finished" : "Restore failed",
      body: ok
        ? `Snapshot ${p.snapshotId?.slice(0, 8) ?? ""} is restored; the previous state is in a pre-restore snapshot.`
        : `The restore failed: ${p.error ?? "unknown error"}`.slice(0, 2000),
      dedupeKey: `restore-${p.backupId}`,
    });
  }

  /** Runs still waiting for a box that is stopping (a manual one it never picked up) will not run now. */
  async #failLeftovers(workspaceId: string): Promise<void> {
    for (const stale of await this.#system.backups.failOpenRuns(workspaceId, "the box stopped before it ran"))
      await this.finished(this.#system, stale);
  }

  async #auditSystem(workspaceId: string, backup: BackupRow): Promise<void> {
    await this.#system.audit({
      action: "backup.request",
      targetType: "workspace",
      targetId: workspaceId,
      details: { backupId: backup.id, trigger: backup.trigger },
    });
  }

  async #restic(workspaceId: string): Promise<Restic> {
    if (!this.#o.driver.backupRepository)
      throw new Unavailable("backups_unreadable", "this driver's backups can be read on the box only");
    const repo = this.#o.driver.backupRepository(workspaceId);
    const secret = (name: string) => this.#system.secrets.read(workspaceId, name);
    const password = await secret("restic-password");
    if (!password) throw new Unavailable("backups_unreadable", "this workspace has no backup password");
    let s3 = repo.s3;
    if (!s3 && repo.s3SecretOutputs) {
      // A driver's secret outputs are sealed as `driver-<name>` (store/build-queue.ts).
      const [accessKeyId, secretAccessKey] = await Promise.all(
        [repo.s3SecretOutputs.accessKeyId, repo.s3SecretOutputs.secretAccessKey].map((k) =>
          secret(`driver-${k}`.toLowerCase()),
        ),
      );
      if (!accessKeyId || !secretAccessKey)
        throw new Unavailable("backups_unreadable", "the workspace's bucket keys are not known yet");
      s3 = { accessKeyId, secretAccessKey };
    }
    return new Restic(
      { url: repo.url, password: { value: password }, ...(s3 ? { s3 } : {}) },
      { retry: this.#o.retry, log: this.#o.log },
    );
  }

  /** Checks the caller reaches the workspace and the snapshot exists in its repository. */
  async #snapshot(scope: AuthorizedStore, workspaceId: string, snapshot: string) {
    await scope.backups.list(workspaceId, 1); // NotFound for anyone but the owner
    if (!/^[0-9a-f]{8,64}$/.test(snapshot)) throw new NotFound("snapshot");
    const restic = await this.#restic(workspaceId);
    let found: Snapshot | undefined;
    try {
      found = (await restic.snapshots()).find((s) => s.id === snapshot || s.shortId === snapshot);
    } catch (err) {
      if (err instanceof ResticError && err.failure === "repository-missing") throw new NotFound("snapshot");
      throw new Unavailable("backup_storage", (err as Error).message);
    }
    if (!found) throw new NotFound("snapshot");
    return { restic, id: found.id };
  }
}

/** Where in the window a workspace's nightly run starts: stable per workspace, spread evenly. */
export function nightlySlotMs(workspaceId: string, windowMs: number): number {
  const h = createHash("sha256").update(workspaceId).digest().readUInt32BE(0);
  return Math.floor((h / 0x1_0000_0000) * windowMs);
}

async function notify(
  scope: AuthorizedStore,
  workspaceId: string,
  n: { kind: string; title: string; body: string; dedupeKey: string },
): Promise<void> {
  if (scope.actor.kind === "agent")
    await scope.notifications.createForOwner({ ...n, sessionId: null, createdAt: new Date() });
  else await scope.backups.notifyOwner(workspaceId, n);
}
