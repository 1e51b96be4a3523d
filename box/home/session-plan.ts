/**
 * What the control plane last said about how sessions start: the user's secrets for their environment and
 * the guided sessions' project and task. Held in this process's memory only (never written to the volume,
 * the state directory or a log), filled from each heartbeat's answer before the sessions are converged, and
 * read by the tmux side (TmuxSessions' `environment`/`guided` options) whenever it creates a session, so a
 * changed secret reaches the next session without a restart.
 */
import type { EnvironmentEntry, GuidedSession, HeartbeatResponse } from "../protocol.ts";
import { isReservedEnvName } from "../protocol.ts";

export class SessionPlan {
  #environment: readonly EnvironmentEntry[] = [];
  #version: string | undefined;
  #guided = new Map<string, GuidedSession>();
  /** The sessions the control plane last asked for: a terminal attach to another one asks first (see knows). */
  #known = new Set<string>();
  #waiters: Array<() => void> = [];

  update(
    desired: Pick<HeartbeatResponse, "environment" | "environmentVersion" | "guided" | "sessions">,
  ): void {
    // Absent means "no news": keep what we hold (the set did not change, or an older control plane).
    if (desired.environment) {
      this.#environment = Object.freeze(desired.environment.filter((e) => !isReservedEnvName(e.name)));
      this.#version = desired.environmentVersion;
    }
    this.#guided = new Map(desired.guided.map((g) => [g.session, g]));
    if (desired.sessions) this.#known = new Set(desired.sessions);
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /**
   * Whether the last answer named this session. A terminal can attach to a session the control plane created
   * a moment ago, before the heartbeat that tells the agent how it starts (a guided session's task): the
   * attach then waits for the next answer, so the session is not created as a plain one.
   */
  knows(session: string): boolean {
    return this.#known.has(session);
  }

  /** Resolves at the next update, or after `timeoutMs` (the control plane unreachable: go with what we hold). */
  nextUpdate(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#waiters.push(done);
    });
  }

  /** What to echo in the next heartbeat, so the control plane resends the set only when it changed. */
  get version(): string | undefined {
    return this.#version;
  }

  environment(): readonly EnvironmentEntry[] {
    return this.#environment;
  }

  guided(session: string): { project: string | null; task: string } | undefined {
    const g = this.#guided.get(session);
    return g ? { project: g.project, task: g.task } : undefined;
  }

  /** The values, for scrubbing text that might echo one (an error from a tool the agent ran). */
  values(): string[] {
    return this.#environment.map((e) => e.value);
  }
}
