/**
 * The agent's backups and restores of its workspace, driven by the control plane's desired state
 * (box/protocol.ts `backup`/`restore` actions) and reported as `backup` events through the outbox.
 *
 * Backup: `user/` and `system/state` of the layout, `--exclude-caches`, plus the user's own exclude file
 * `user/.backup-exclude` (restic `--exclude-file` syntax, one pattern a line). A marker file in
 * system/backups says a run is in progress: found at the start of the next run, the last one crashed (or
 * restic was killed), so stale locks are cleared first. The nightly run then applies the retention.
 *
 * Restore: (1) a safety snapshot tagged `pre-restore`, (2) `restic restore` into a staging directory on the
 * same volume, (3) the tmux sessions are stopped, each restored path is swapped in by rename (the old one
 * moved aside, then deleted: the safety snapshot holds it), (4) the sessions are started again. Only
 * `user/` is restorable: `system/` is the agent's (its outbox must never go back in time).
 */
import { existsSync, lstatSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { AgentEventDraft, BackupAction, BackupPayload, RestoreAction } from "../protocol.ts";
import { RESTORE_PATH_RE } from "../protocol.ts";
import { DEFAULT_RETENTION, type Restic, type Retention } from "./restic.ts";

/** What restore needs from tmux: box/tmux's TmuxSessions satisfies it. */
export interface RestartableSessions {
  list(): Promise<ReadonlyArray<{ name: string }>>;
  kill(name: string): Promise<unknown>;
  ensure(name: string): Promise<unknown>;
}

export interface BoxBackupsOptions {
  restic: Restic;
  /** The workspace root (the layout's `user/`, `system/`). */
  root: string;
  /** restic `--host`: the workspace id, so every instance of the box writes one history. */
  host: string;
  sessions: RestartableSessions | null;
  emit: (draft: AgentEventDraft) => void;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  retention?: Retention;
  /** Minimum time between two progress events. */
  progressEveryMs?: number;
}

export const EXCLUDE_FILE = "user/.backup-exclude";

export class BoxBackups {
  readonly #o: Required<BoxBackupsOptions>;
  /** The repository answered once: later runs skip the check (a failed run checks again next time). */
  #initialized = false;

  constructor(options: BoxBackupsOptions) {
    this.#o = { retention: DEFAULT_RETENTION, progressEveryMs: 1_000, ...options };
  }

  get #work(): string {
    return join(this.#o.root, "system", "backups");
  }

  /** The paths a backup covers, relative to the workspace root (restic runs from there). */
  sources(): string[] {
    return ["user", "system/state"];
  }

  async runBackup(action: BackupAction, signal?: AbortSignal): Promise<string> {
    const started = Date.now();
    const report = (p: Omit<BackupPayload, "backupId" | "operation">) => {
      if (action.backupId) this.#emit({ backupId: action.backupId, operation: "backup", ...p });
    };
    try {
      const summary = await this.#backup(
        [`trigger:${action.trigger}`],
        (percent) => report({ phase: "running", percent }),
        signal,
      );
      if (action.prune) {
        // Retention failing does not undo the snapshot just made: report it, keep the run a success.
        await this.#o.restic.forget(this.#o.retention, { host: this.#o.host, signal }).catch((err: Error) => {
          this.#o.log.warn({ err: err.message }, "backup retention (forget --prune) failed");
        });
      }
      report({
        phase: "succeeded",
        snapshotId: summary.snapshotId,
        bytesAdded: summary.bytesAdded,
        files: summary.totalFiles,
        durationMs: Date.now() - started,
      });
      return summary.snapshotId;
    } catch (err) {
      report({
        phase: "failed",
        error: (err as Error).message.slice(0, 2000),
        durationMs: Date.now() - started,
      });
      throw err;
    }
  }

  async runRestore(action: RestoreAction, signal?: AbortSignal): Promise<void> {
    const started = Date.now();
    const emit = (operation: "backup" | "restore", p: Omit<BackupPayload, "backupId" | "operation">) =>
      this.#emit({ backupId: action.backupId, operation, ...p });
    // Checked again here: these paths are renamed over.
    for (const p of action.paths)
      if (!RESTORE_PATH_RE.test(p)) throw new Error(`restore path ${JSON.stringify(p)} is outside user/`);
    // A path below another chosen one (or the same twice) comes with it: swapping it again would move the
    // freshly restored copy aside and then find its staged source already gone, half-applied.
    const chosen = [...new Set(action.paths)];
    const covering = chosen.filter((p) => !chosen.some((q) => q !== p && p.startsWith(`${q}/`)));
    const paths = covering.length ? covering : ["user"];
    // 1. The safety snapshot: what is there now, tagged, before anything is touched.
    try {
      const safety = await this.#backup(["trigger:pre-restore", "pre-restore"], () => {}, signal);
      emit("backup", {
        phase: "succeeded",
        snapshotId: safety.snapshotId,
        bytesAdded: safety.bytesAdded,
        files: safety.totalFiles,
        durationMs: Date.now() - started,
      });
    } catch (err) {
      const error = `safety snapshot failed, nothing was restored: ${(err as Error).message}`.slice(0, 2000);
      emit("backup", { phase: "failed", error });
      emit("restore", { phase: "failed", error });
      throw new Error(error);
    }
    const staging = join(this.#work, `staging-${action.id}`);
    const aside = join(this.#work, `replaced-${action.id}`);
    try {
      // 2. Into staging: <staging>/user/... (snapshots are rooted at the workspace root)
      rmSync(staging, { recursive: true, force: true });
      mkdirSync(staging, { recursive: true, mode: 0o700 });
      await this.#o.restic.restore(
        action.snapshot,
        staging,
        covering.map((p) => `/${p}`),
        signal,
      );
      const staged = paths.map((p) => ({
        rel: p,
        from: join(staging, p),
        to: join(this.#o.root, p),
      }));
      const missing = staged.filter((s) => !existsSync(s.from)).map((s) => s.rel);
      if (missing.length) throw new Error(`not in snapshot ${action.snapshot}: ${missing.join(", ")}`);
      for (const s of staged) this.#assertInside(s.rel);
      // 3. Swap with the sessions stopped, so no process writes into a half-restored tree.
      const sessions = this.#o.sessions ? (await this.#o.sessions.list()).map((s) => s.name) : [];
      for (const name of sessions) await this.#o.sessions!.kill(name).catch(() => {});
      try {
        for (const s of staged) {
          // Again right before the rename: the user's processes may have changed the tree meanwhile.
          this.#assertInside(s.rel);
          const old = join(aside, s.rel);
          if (existsSync(s.to)) {
            mkdirSync(dirname(old), { recursive: true });
            renameSync(s.to, old);
          }
          mkdirSync(dirname(s.to), { recursive: true });
          renameSync(s.from, s.to);
        }
      } finally {
        // 4. Sessions back, whatever happened.
        for (const name of sessions)
          await this.#o
            .sessions!.ensure(name)
            .catch((err: Error) =>
              this.#o.log.warn({ session: name, err: err.message }, "session did not restart after restore"),
            );
      }
      emit("restore", { phase: "succeeded", snapshotId: action.snapshot, durationMs: Date.now() - started });
    } catch (err) {
      const error = (err as Error).message.slice(0, 2000);
      emit("restore", { phase: "failed", snapshotId: action.snapshot, error });
      throw err;
    } finally {
      rmSync(staging, { recursive: true, force: true });
      rmSync(aside, { recursive: true, force: true });
    }
  }

  /**
   * The directories above a restored path must be real directories of the volume: a symlink the user put
   * there (`user/x` -> `/etc`) would make the agent, root on a VM, rename files outside the workspace.
   */
  #assertInside(rel: string): void {
    const parts = rel.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      let st: ReturnType<typeof lstatSync>;
      try {
        st = lstatSync(join(this.#o.root, dir));
      } catch {
        return; // missing: created below as a plain directory
      }
      if (st.isSymbolicLink() || !st.isDirectory())
        throw new Error(
          `restore path ${JSON.stringify(rel)} goes through ${dir}, which is a ${st.isSymbolicLink() ? "symlink" : "file"} now; nothing was restored there`,
        );
    }
  }

  async #backup(tags: string[], onPercent: (p: number) => void, signal?: AbortSignal) {
    const restic = this.#o.restic;
    mkdirSync(this.#work, { recursive: true, mode: 0o700 });
    const marker = join(this.#work, "run-in-progress");
    if (!this.#initialized) await restic.ensureInit(signal);
    this.#initialized = true;
    if (existsSync(marker)) {
      // The last run never finished (agent crash, restic killed): its lock is stale.
      this.#o.log.warn({}, "previous backup did not finish; clearing stale repository locks");
      await restic.unlock(signal);
    }
    writeFileSync(marker, String(process.pid), { mode: 0o600 });
    let last = 0;
    const summary = await restic
      .backup(this.sources(), {
        host: this.#o.host,
        tags: ["berth", ...tags],
        excludeFile: join(this.#o.root, EXCLUDE_FILE),
        cwd: this.#o.root,
        ...(signal ? { signal } : {}),
        onProgress: (p) => {
          const now = Date.now();
          if (now - last < this.#o.progressEveryMs) return;
          last = now;
          onPercent(Math.min(1, Math.max(0, p.percent)));
        },
      })
      .catch((err: unknown) => {
        this.#initialized = false;
        throw err;
      });
    rmSync(marker, { force: true });
    this.#o.log.info(
      { snapshotId: summary.snapshotId, bytesAdded: summary.bytesAdded, files: summary.totalFiles },
      "backup done",
    );
    return summary;
  }

  #emit(payload: BackupPayload): void {
    this.#o.emit({ type: "backup", at: new Date().toISOString(), payload });
  }
}
