/**
 * Where notification signals meet: hook posts (from the loopback endpoint) and terminal signals (from the
 * session logs, through one OSC parser per session) go through the deduper, and what survives becomes a
 * `notification` event in the outbox.
 */
import type { Logger } from "pino";
import type { ClaudeStatePayload, NotificationPayload } from "../protocol.ts";
import { ClaudeStateTracker } from "./claude-state.ts";
import { NotificationDeduper } from "./dedupe.ts";
import { type ClaudeHookInput, hookToCandidate } from "./hook-input.ts";
import type { HookResult } from "./loopback-server.ts";
import { OscParser, type TerminalSignal } from "./osc-parser.ts";

export interface NotificationCenterOptions {
  publish: (notification: NotificationPayload) => void;
  /** Each change of a session's Claude state (claude-state.ts); its time is the state's "since". */
  publishState?: (change: ClaudeStatePayload, at: Date) => void;
  /** How long a working Claude's pane may stay silent before it counts as idle (an interrupt). */
  quietMs?: number;
  /** Where the Claude states survive agent restarts (claude-state.ts). */
  claudeStatePath?: string;
  log: Logger;
  windowMs?: number;
  holdMs?: number;
}

export class NotificationCenter {
  private readonly deduper: NotificationDeduper;
  private readonly parsers = new Map<string, OscParser>();
  private readonly log: Logger;
  readonly claude: ClaudeStateTracker;

  constructor(options: NotificationCenterOptions) {
    this.log = options.log;
    this.claude = new ClaudeStateTracker({
      publish: options.publishState ?? (() => {}),
      ...(options.quietMs !== undefined ? { quietMs: options.quietMs } : {}),
      ...(options.claudeStatePath ? { statePath: options.claudeStatePath } : {}),
    });
    const dedupe: ConstructorParameters<typeof NotificationDeduper>[0] = { emit: options.publish };
    if (options.windowMs !== undefined) dedupe.windowMs = options.windowMs;
    if (options.holdMs !== undefined) dedupe.holdMs = options.holdMs;
    this.deduper = new NotificationDeduper(dedupe);
  }

  get stats(): { emitted: number; deduped: number } {
    return this.deduper.stats;
  }

  fromHook(input: ClaudeHookInput, session: string | null): HookResult {
    const before = this.claude.onHook(input, session);
    const candidate = hookToCandidate(input, session, before);
    if (!candidate) return "ignored";
    const result = this.deduper.hook(candidate);
    this.log.debug({ session, kind: candidate.kind, result }, "claude hook");
    return result;
  }

  /** Bytes captured from a session's pane. */
  fromTerminal(session: string, chunk: Uint8Array): void {
    this.claude.noteOutput(session);
    let parser = this.parsers.get(session);
    if (!parser) {
      parser = new OscParser();
      this.parsers.set(session, parser);
    }
    for (const signal of parser.push(chunk)) this.deduper.terminal({ ...describe(signal), session });
  }

  /** The session's capture restarted (truncated file): drop any half-parsed sequence. */
  resetTerminal(session: string): void {
    this.parsers.get(session)?.reset();
  }

  flush(): void {
    this.deduper.flush();
  }
}

function describe(signal: TerminalSignal) {
  switch (signal.type) {
    case "osc9":
      return {
        kind: "osc" as const,
        source: "osc9" as const,
        title: cut(signal.message || "Terminal notification", 200),
        message: "",
      };
    case "osc777":
      return {
        kind: "osc" as const,
        source: "osc777" as const,
        title: cut(signal.title || "Terminal notification", 200),
        message: cut(signal.body, 2000),
      };
    case "bel":
      return { kind: "osc" as const, source: "bel" as const, title: "Terminal bell", message: "" };
  }
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
