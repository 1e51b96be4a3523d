/**
 * One "Claude needs you" moment often arrives twice: from the Claude Code hook and from the OSC 9 (or BEL)
 * Claude writes to its terminal, which pipe-pane captures. Hooks are the reliable signal, so they are
 * emitted at once; a terminal signal waits `holdMs` for a hook from the same session and is dropped if one
 * arrived within `windowMs` either side. Bursts of terminal signals in one session collapse to one.
 */
import { randomUUID } from "node:crypto";
import type { NotificationPayload } from "../protocol.ts";

export type NotificationCandidate = Omit<NotificationPayload, "dedupeKey">;

export interface DeduperOptions {
  emit: (notification: NotificationPayload) => void;
  windowMs?: number;
  holdMs?: number;
}

interface Held {
  candidate: NotificationCandidate;
  at: number;
  timer: NodeJS.Timeout;
}

export class NotificationDeduper {
  readonly stats = { emitted: 0, deduped: 0 };
  private readonly emitFn: (n: NotificationPayload) => void;
  private readonly windowMs: number;
  private readonly holdMs: number;
  private lastHookAt = new Map<string, number>();
  private lastHookKey = new Map<string, { key: string; at: number }>();
  private lastTerminalAt = new Map<string, number>();
  private held = new Map<string, Held>();

  constructor(options: DeduperOptions) {
    this.emitFn = options.emit;
    this.windowMs = options.windowMs ?? 10_000;
    this.holdMs = options.holdMs ?? 1500;
  }

  /** A hook event: emitted now unless it repeats the same hook for the same session within the window. */
  hook(candidate: NotificationCandidate): "emitted" | "deduped" {
    const now = Date.now();
    const session = candidate.session ?? "";
    const key = `${candidate.kind}\u0000${candidate.message}`;
    const last = this.lastHookKey.get(session);
    if (last && last.key === key && now - last.at < this.windowMs) {
      this.stats.deduped++;
      return "deduped";
    }
    this.lastHookKey.set(session, { key, at: now });
    if (candidate.session !== null) {
      this.lastHookAt.set(candidate.session, now);
      const held = this.held.get(candidate.session);
      if (held && now - held.at < this.windowMs) {
        clearTimeout(held.timer);
        this.held.delete(candidate.session);
        this.stats.deduped++;
      }
    }
    this.emit(candidate);
    return "emitted";
  }

  /** An OSC/BEL signal from a session's terminal output. */
  terminal(candidate: NotificationCandidate & { session: string }): "held" | "deduped" {
    const now = Date.now();
    const session = candidate.session;
    const hookAt = this.lastHookAt.get(session);
    const termAt = this.lastTerminalAt.get(session);
    if (
      (hookAt !== undefined && now - hookAt < this.windowMs) ||
      (termAt !== undefined && now - termAt < this.windowMs)
    ) {
      this.stats.deduped++;
      return "deduped";
    }
    this.lastTerminalAt.set(session, now);
    const timer = setTimeout(() => {
      this.held.delete(session);
      this.emit(candidate);
    }, this.holdMs);
    timer.unref?.();
    this.held.set(session, { candidate, at: now, timer });
    return "held";
  }

  /** Emits whatever is still held (shutdown): a possible duplicate beats a lost notification. */
  flush(): void {
    for (const [session, held] of this.held) {
      clearTimeout(held.timer);
      this.held.delete(session);
      this.emit(held.candidate);
    }
  }

  private emit(candidate: NotificationCandidate): void {
    this.stats.emitted++;
    this.emitFn({ ...candidate, dedupeKey: `n-${randomUUID()}` });
  }
}
