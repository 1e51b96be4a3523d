/**
 * What Claude Code is doing in each session, from its hooks (features-2.md §1's state machine):
 *
 *   UserPromptSubmit, PostToolUse(Failure)      → working   (a tool ran: a granted permission resumed work)
 *   PermissionRequest (tool), Elicitation       → needs_you (at once; the Notification hook comes ~6 s later)
 *   Stop                                        → idle      (or working, when background tasks remain)
 *   StopFailure (error kind)                    → error
 *   SessionStart / SessionEnd (reason)          → idle / ended
 *
 * `Stop` does not fire when the user interrupts Claude (Esc), so a working session whose pane output has
 * been quiet for `quietMs` is taken as idle (`detail: "quiet"`): a working Claude redraws its spinner and
 * elapsed time every second, so minutes of silence mean it is not working any more.
 *
 * Each change is published once (the agent turns it into a `claude_state` event; its time is the "since").
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { CLAUDE_STATES, type ClaudeState, type ClaudeStatePayload, SESSION_NAME_RE } from "../protocol.ts";
import { type ClaudeHookInput, errorKind } from "./hook-input.ts";

export { errorKind };

export interface SessionClaudeState {
  state: ClaudeState;
  detail: string | null;
  /** The hook event that set it (or `quiet`), for the notification rules in hook-input.ts. */
  cause: string;
  since: number;
}

export interface ClaudeStateTrackerOptions {
  publish: (change: ClaudeStatePayload, at: Date) => void;
  quietMs?: number;
  now?: () => number;
  /**
   * Where the states are kept across agent restarts (`system/state/claude-states.json`): a Claude that
   * was working when the agent restarted and is then interrupted must still fall back to idle.
   */
  statePath?: string;
}

export const DEFAULT_QUIET_MS = 90_000;

export class ClaudeStateTracker {
  readonly #publish: ClaudeStateTrackerOptions["publish"];
  readonly #quietMs: number;
  readonly #now: () => number;
  readonly #states = new Map<string, SessionClaudeState>();
  readonly #lastOutput = new Map<string, number>();
  readonly #statePath: string | undefined;

  constructor(options: ClaudeStateTrackerOptions) {
    this.#publish = options.publish;
    this.#quietMs = options.quietMs ?? DEFAULT_QUIET_MS;
    this.#now = options.now ?? Date.now;
    this.#statePath = options.statePath;
    for (const [session, s] of Object.entries(this.#load())) this.#states.set(session, s);
  }

  #load(): Record<string, SessionClaudeState> {
    if (!this.#statePath) return {};
    try {
      const raw = JSON.parse(readFileSync(this.#statePath, "utf8")) as Record<string, SessionClaudeState>;
      return Object.fromEntries(
        Object.entries(raw).filter(
          ([name, s]) =>
            SESSION_NAME_RE.test(name) &&
            (CLAUDE_STATES as readonly string[]).includes(s?.state) &&
            Number.isFinite(s.since),
        ),
      );
    } catch {
      return {}; // none yet, or unreadable: start empty (hooks rebuild it)
    }
  }

  #save(): void {
    if (!this.#statePath) return;
    try {
      const tmp = `${this.#statePath}.tmp`;
      writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.#states)), { mode: 0o600 });
      renameSync(tmp, this.#statePath);
    } catch {
      // Best effort: losing it only costs the interrupt fallback across a restart.
    }
  }

  get(session: string): SessionClaudeState | undefined {
    return this.#states.get(session);
  }

  /** Applies a hook; returns the state before it (for the notification rules). */
  onHook(input: ClaudeHookInput, session: string | null): SessionClaudeState | undefined {
    if (session === null) return undefined;
    const before = this.#states.get(session);
    const next = transition(input, before);
    if (next) this.#set(session, next.state, next.detail, input.hook_event_name);
    return before;
  }

  /** Bytes from the session's Claude pane. */
  noteOutput(session: string): void {
    this.#lastOutput.set(session, this.#now());
  }

  /** The interrupt fallback: working sessions whose output went quiet become idle. Call it periodically. */
  sweep(): void {
    const now = this.#now();
    for (const [session, s] of this.#states) {
      if (s.state !== "working") continue;
      const lastSign = Math.max(s.since, this.#lastOutput.get(session) ?? 0);
      if (now - lastSign >= this.#quietMs) this.#set(session, "idle", "quiet", "quiet");
    }
  }

  #set(session: string, state: ClaudeState, detail: string | null, cause: string): void {
    const before = this.#states.get(session);
    if (before && before.state === state && before.detail === detail) {
      before.cause = cause;
      return;
    }
    const since = this.#now();
    this.#states.set(session, { state, detail, cause, since });
    this.#save();
    this.#publish({ session, state, detail }, new Date(since));
  }
}

function transition(
  input: ClaudeHookInput,
  before: SessionClaudeState | undefined,
): { state: ClaudeState; detail: string | null } | null {
  switch (input.hook_event_name) {
    case "UserPromptSubmit":
      return { state: "working", detail: null };
    case "PostToolUse":
    case "PostToolUseFailure":
      // A tool ran: work goes on (this is what ends "needs you" after the user granted a permission).
      return before?.state === "working" ? null : { state: "working", detail: null };
    case "PermissionRequest":
      return { state: "needs_you", detail: cut(input.tool_name?.trim() || "permission", 200) };
    case "Elicitation":
      return { state: "needs_you", detail: "question" };
    case "Notification": {
      const type = input.notification_type;
      // The late echo of a PermissionRequest/Elicitation we already hold changes nothing.
      if (before?.state === "needs_you") return null;
      if (type === "permission_prompt") return { state: "needs_you", detail: "permission" };
      if (type === "elicitation_dialog") return { state: "needs_you", detail: "question" };
      // idle_prompt: Claude has waited for input for a minute. Only news when we thought it was working.
      if (type === "idle_prompt" && (before === undefined || before.state === "working"))
        return { state: "idle", detail: null };
      return null;
    }
    case "Stop":
      if (input.stop_hook_active) return null;
      if (Array.isArray(input.background_tasks) && input.background_tasks.length > 0)
        return { state: "working", detail: "background tasks" };
      return { state: "idle", detail: null };
    case "StopFailure":
      return { state: "error", detail: errorKind(input.error) };
    case "SessionStart":
      return { state: "idle", detail: null };
    case "SessionEnd":
      return { state: "ended", detail: input.reason ? cut(input.reason, 64) : null };
    default:
      return null;
  }
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, max);
}
