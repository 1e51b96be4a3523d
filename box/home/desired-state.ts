/**
 * Applies the desired state the control plane returns with each heartbeat: converge tmux sessions, type keys,
 * run a backup. Actions carry ids; finished ids are remembered on disk so an action the control plane resends
 * (it has not seen our report yet) never runs twice, and reported until the control plane acknowledges them.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import type { Logger } from "pino";
import {
  type BackupAction,
  type CompletedAction,
  type HeartbeatResponse,
  type OnboardAction,
  type PaneRole,
  type RestoreAction,
  SESSION_NAME_RE,
} from "../protocol.ts";
import type { SessionPlan } from "./session-plan.ts";

/** What the agent needs from tmux; box/tmux's `TmuxSessions` satisfies it as is. */
export interface SessionManager {
  /** Creates the session with its panes (and capture) if it does not exist; a no-op otherwise. */
  ensure(name: string): Promise<unknown>;
  list(): Promise<ReadonlyArray<{ name: string }>>;
  kill(name: string): Promise<unknown>;
  /** Types `text` literally into the session's pane of that role, then Enter when `enter` is set. */
  sendKeys(name: string, text: string, options: { pane?: PaneRole; enter?: boolean }): Promise<void>;
}

/** Thrown by a SessionManager that cannot act yet (workspace not ready): the action waits, it does not fail. */
export class NotReadyError extends Error {
  override name = "NotReadyError";
}

/** Runs one backup (box/backups); throws to report failure. */
export type BackupRunner = (action: BackupAction) => Promise<unknown>;
/** Runs one restore (box/backups); throws to report failure. */
export type RestoreRunner = (action: RestoreAction) => Promise<unknown>;

/** An agent with no backup repository configured: backups and restores fail with this. */
export const backupNotConfigured = async (): Promise<never> => {
  throw new Error("this box has no backup repository configured");
};

/** Applies an onboarding interview's result on the volume (box/onboarding); throws to report failure. */
export type OnboardRunner = (action: OnboardAction) => Promise<void>;

interface DoneRecord extends CompletedAction {
  acked: boolean;
}

const MAX_REMEMBERED = 1000;

export class DesiredStateApplier {
  private readonly sessions: SessionManager | null;
  private readonly backup: BackupRunner;
  private readonly restore: RestoreRunner;
  private readonly statePath: string;
  private readonly log: Logger;
  private done = new Map<string, DoneRecord>();
  private sessionError: string | null = null;
  private backupRunning: Promise<void> | null = null;
  private readonly plan: SessionPlan | null;
  private readonly onboard: OnboardRunner | null;
  /** Onboarding runs one at a time, in the background (a clone takes a while); ids queued or running. */
  private onboardQueue: Promise<void> = Promise.resolve();
  private readonly onboarding = new Set<string>();

  constructor(options: {
    sessions: SessionManager | null;
    backup?: BackupRunner;
    restore?: RestoreRunner;
    /** JSON file under system/state/ remembering finished action ids. */
    statePath: string;
    log: Logger;
    /** Secrets and guided starts for new sessions, updated from every answer before sessions converge. */
    plan?: SessionPlan;
    onboard?: OnboardRunner;
  }) {
    this.plan = options.plan ?? null;
    this.onboard = options.onboard ?? null;
    this.sessions = options.sessions;
    this.backup = options.backup ?? backupNotConfigured;
    this.restore = options.restore ?? backupNotConfigured;
    this.statePath = options.statePath;
    this.log = options.log;
    this.load();
  }

  /** Finished actions the control plane has not acknowledged yet, for the next heartbeat. */
  completedToReport(): CompletedAction[] {
    return [...this.done.values()]
      .filter((d) => !d.acked)
      .slice(0, 100)
      .map(({ acked: _acked, ...rest }) => rest);
  }

  /** The last session convergence error, or null when the last pass succeeded. */
  get lastSessionError(): string | null {
    return this.sessionError;
  }

  ack(ids: readonly string[]): void {
    let changed = false;
    for (const id of ids) {
      const d = this.done.get(id);
      if (d && !d.acked) {
        d.acked = true;
        changed = true;
      }
    }
    if (changed) this.save();
  }

  async apply(desired: HeartbeatResponse): Promise<void> {
    this.plan?.update(desired);
    if (desired.sessions && this.sessions) await this.convergeSessions(desired.sessions);
    for (const action of desired.sendKeys) {
      if (this.done.has(action.id)) continue;
      let error: string | undefined;
      try {
        if (!this.sessions) throw new Error("this agent has no tmux session manager");
        await this.sessions.sendKeys(action.session, action.keys, { pane: action.pane, enter: action.enter });
      } catch (err) {
        if (err instanceof NotReadyError) continue; // the control plane resends it; try then
        error = (err as Error).message;
        this.log.warn({ actionId: action.id, session: action.session, err: error }, "send-keys failed");
      }
      this.record(action.id, "keys", error);
    }
    this.startOnboarding(desired.onboard);
    // One repository run at a time: a restore waits for a running backup and the other way round.
    const backup = desired.backup;
    if (backup && !this.done.has(backup.id) && !this.backupRunning)
      this.runInBackground(backup.id, "backup", () => this.backup(backup));
    const restore = desired.restore;
    if (restore && !this.done.has(restore.id) && !this.backupRunning)
      this.runInBackground(restore.id, "restore", () => this.restore(restore));
  }

  /** Backups take minutes: run in the background and report on a later heartbeat. */
  private runInBackground(id: string, kind: "backup" | "restore", run: () => Promise<unknown>): void {
    const running = run().then(
      () => this.record(id, kind, undefined),
      (err: Error) => this.record(id, kind, err.message),
    );
    this.backupRunning = running.finally(() => {
      this.backupRunning = null;
    });
  }

  private startOnboarding(actions: readonly OnboardAction[]): void {
    for (const action of actions) {
      if (this.done.has(action.id) || this.onboarding.has(action.id)) continue;
      this.onboarding.add(action.id);
      const run = async () => {
        let error: string | undefined;
        try {
          if (!this.onboard) throw new Error("this agent cannot apply onboarding");
          await this.onboard(action);
          this.log.info({ actionId: action.id, project: action.project }, "onboarding applied");
        } catch (err) {
          if (err instanceof NotReadyError) {
            this.onboarding.delete(action.id); // the control plane resends it; try then
            return;
          }
          error = (err as Error).message;
          this.log.warn({ actionId: action.id, project: action.project, err: error }, "onboarding failed");
        }
        this.record(action.id, "onboard", error);
        this.onboarding.delete(action.id);
      };
      this.onboardQueue = this.onboardQueue.then(run, run);
    }
  }

  private async convergeSessions(keep: readonly string[]): Promise<void> {
    const sessions = this.sessions!;
    const errors: string[] = [];
    for (const name of keep) {
      // The schema already checked it; check again because this name reaches tmux (`#()` runs commands).
      if (!SESSION_NAME_RE.test(name)) {
        errors.push(`refusing invalid session name ${JSON.stringify(name.slice(0, 40))}`);
        continue;
      }
      try {
        await sessions.ensure(name);
      } catch (err) {
        if (err instanceof NotReadyError) return;
        errors.push(`ensure ${name}: ${(err as Error).message}`);
      }
    }
    try {
      const wanted = new Set(keep);
      for (const { name } of await sessions.list()) {
        if (wanted.has(name)) continue;
        try {
          await sessions.kill(name);
          this.log.info({ session: name }, "killed session the control plane no longer lists");
        } catch (err) {
          errors.push(`kill ${name}: ${(err as Error).message}`);
        }
      }
    } catch (err) {
      errors.push(`list sessions: ${(err as Error).message}`);
    }
    this.sessionError = errors.length ? errors.join("; ").slice(0, 2000) : null;
    if (this.sessionError) this.log.warn({ err: this.sessionError }, "session convergence incomplete");
  }

  private record(id: string, kind: CompletedAction["kind"], error: string | undefined): void {
    const rec: DoneRecord = { id, kind, ok: error === undefined, at: new Date().toISOString(), acked: false };
    if (error !== undefined) rec.error = error.slice(0, 2000);
    this.done.set(id, rec);
    if (this.done.size > MAX_REMEMBERED) {
      for (const [k, v] of this.done) {
        if (this.done.size <= MAX_REMEMBERED) break;
        if (v.acked) this.done.delete(k);
      }
    }
    this.save();
  }

  private load(): void {
    if (!existsSync(this.statePath)) return;
    try {
      const records = JSON.parse(readFileSync(this.statePath, "utf8")) as DoneRecord[];
      for (const r of records) if (typeof r?.id === "string") this.done.set(r.id, r);
    } catch (err) {
      // Losing this file risks re-running an action, so say so loudly rather than silently.
      this.log.error(
        { path: this.statePath, err: (err as Error).message },
        "action state unreadable; starting empty",
      );
    }
  }

  private save(): void {
    const tmp = `${this.statePath}.tmp`;
    writeFileSync(tmp, JSON.stringify([...this.done.values()]), { mode: 0o600 });
    renameSync(tmp, this.statePath);
  }
}
