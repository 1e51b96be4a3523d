/**
 * Claude Code hook input (JSON on the hook's stdin, posted to us as is) and its mapping to a notification.
 * Field names follow the hooks reference and the Agent SDK's `BaseHookInput` (see shared notes/protocols.md
 * §2). Unknown fields are ignored, so newer Claude Code versions keep working.
 */
import { z } from "zod";
import { type ClaudeState, LIMITS } from "../protocol.ts";
import type { NotificationCandidate } from "./dedupe.ts";

export const MAX_HOOK_BODY_BYTES = 1024 * 1024;

export const claudeHookInput = z.object({
  hook_event_name: z.string().min(1).max(64),
  session_id: z.string().max(256).optional(),
  cwd: z.string().max(4096).optional(),
  notification_type: z.string().max(64).optional(),
  message: z
    .string()
    .max(64 * 1024)
    .optional(),
  title: z.string().max(4096).optional(),
  stop_hook_active: z.boolean().optional(),
  last_assistant_message: z.string().optional(),
  /** PermissionRequest / PostToolUse: the tool and its input (a command, a path...). */
  tool_name: z.string().max(256).optional(),
  tool_input: z.unknown().optional(),
  /** StopFailure: the error kind (`rate_limit`, `overloaded`, ...); its shape is not pinned, so read loosely. */
  error: z.unknown().optional(),
  /** SessionEnd: clear, resume, logout, prompt_input_exit, other. */
  reason: z.string().max(64).optional(),
  /** Stop: background work Claude still waits on. */
  background_tasks: z.unknown().optional(),
});
export type ClaudeHookInput = z.infer<typeof claudeHookInput>;

const TITLES = {
  permission_prompt: "Claude needs your permission",
  idle_prompt: "Claude is waiting for your input",
  elicitation_dialog: "Claude has a question",
  stop: "Claude finished",
  stop_failure: "Claude stopped with an error",
} as const;

/**
 * The notification a hook stands for, or null for hook events that are not "Claude needs you". `before` is
 * the session's Claude state before this hook (claude-state.ts): one real event is one notification, so
 * the `Notification` hook's late echo of a `PermissionRequest`/`Elicitation` (~6 s later) and the
 * `idle_prompt` that follows every `Stop` (~60 s later) are dropped when the earlier hook already spoke.
 */
export function hookToCandidate(
  input: ClaudeHookInput,
  session: string | null,
  /** The session's state before this hook (claude-state.ts `SessionClaudeState`). */
  before?: { state: ClaudeState; since: number; cause: string },
): NotificationCandidate | null {
  let kind: keyof typeof TITLES;
  let title: string | undefined = input.title?.trim();
  let message = input.message ?? "";
  let workedSeconds: number | undefined;
  switch (input.hook_event_name) {
    case "Notification": {
      const type = input.notification_type;
      if (type === "permission_prompt" || type === "idle_prompt" || type === "elicitation_dialog")
        kind = type;
      // Before matcher values existed (Claude Code < 2.0.37) there was no type: infer it from the text.
      else if (type === undefined)
        kind = /permission/i.test(input.message ?? "") ? "permission_prompt" : "idle_prompt";
      else return null;
      // The echo of a PermissionRequest/Elicitation already notified. (A needs-you the Notification hook itself
      // set, as with a Claude Code without those hooks, is no echo: each such prompt notifies.)
      if (kind !== "idle_prompt" && before?.state === "needs_you" && before.cause !== "Notification")
        return null;
      if (kind === "idle_prompt" && before !== undefined && before.state !== "working") return null;
      break;
    }
    case "PermissionRequest": {
      kind = "permission_prompt";
      const tool = input.tool_name?.trim();
      title = tool ? `Claude needs your permission: ${tool}` : TITLES.permission_prompt;
      message = describeToolInput(input.tool_input);
      break;
    }
    case "Elicitation":
      kind = "elicitation_dialog";
      break;
    case "Stop":
      // Set when Claude is already continuing because of a (user's) stop hook: nobody is waiting.
      if (input.stop_hook_active) return null;
      if (Array.isArray(input.background_tasks) && input.background_tasks.length > 0) return null;
      kind = "stop";
      message = input.message ?? input.last_assistant_message ?? "";
      if (before?.state === "working")
        workedSeconds = Math.max(0, Math.round((Date.now() - before.since) / 1000));
      break;
    case "StopFailure": {
      kind = "stop_failure";
      const error = errorKind(input.error);
      title = `Claude stopped: ${error.replaceAll("_", " ")}`;
      break;
    }
    default:
      return null;
  }
  return {
    kind,
    source: "hook",
    session,
    title: truncate(title || TITLES[kind], LIMITS.maxTitle),
    message: truncate(message.trim(), LIMITS.maxMessage),
    ...(workedSeconds !== undefined ? { workedSeconds } : {}),
  };
}

/** What a permission request is for, in one line: the command, the file, or the URL it names. */
function describeToolInput(input: unknown): string {
  if (!input || typeof input !== "object") return "";
  const o = input as Record<string, unknown>;
  for (const key of ["command", "file_path", "path", "url", "pattern", "description"]) {
    const v = o[key];
    if (typeof v === "string" && v.trim()) return v.trim().split("\n")[0]!;
  }
  return "";
}

/** StopFailure's `error`: a kind string, or an object carrying one; `unknown` when neither. */
export function errorKind(error: unknown): string {
  if (typeof error === "string" && error.trim()) return truncate(error.trim(), 64);
  if (error && typeof error === "object") {
    for (const key of ["type", "kind", "error", "code"]) {
      const v = (error as Record<string, unknown>)[key];
      if (typeof v === "string" && v.trim()) return truncate(v.trim(), 64);
    }
  }
  return "unknown";
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
