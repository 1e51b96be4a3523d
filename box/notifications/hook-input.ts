/**
 * Claude Code hook input (JSON on the hook's stdin, posted to us as is) and its mapping to a notification.
 * Field names follow the hooks reference and the Agent SDK's `BaseHookInput` (see shared notes/protocols.md
 * §2). Unknown fields are ignored, so newer Claude Code versions keep working.
 */
import { z } from "zod";
import { LIMITS } from "../protocol.ts";
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
});
export type ClaudeHookInput = z.infer<typeof claudeHookInput>;

const TITLES = {
  permission_prompt: "Claude needs your permission",
  idle_prompt: "Claude is waiting for your input",
  elicitation_dialog: "Claude has a question",
  stop: "Claude finished",
} as const;

/** The notification a hook stands for, or null for hook events that are not "Claude needs you". */
export function hookToCandidate(
  input: ClaudeHookInput,
  session: string | null,
): NotificationCandidate | null {
  let kind: keyof typeof TITLES;
  if (input.hook_event_name === "Notification") {
    const type = input.notification_type;
    if (type === "permission_prompt" || type === "idle_prompt" || type === "elicitation_dialog") kind = type;
    // Before matcher values existed (Claude Code < 2.0.37) there was no type: infer it from the text.
    else if (type === undefined)
      kind = /permission/i.test(input.message ?? "") ? "permission_prompt" : "idle_prompt";
    else return null;
  } else if (input.hook_event_name === "Stop") {
    // Set when Claude is already continuing because of a (user's) stop hook: nobody is waiting.
    if (input.stop_hook_active) return null;
    kind = "stop";
  } else return null;
  const message = input.message ?? (kind === "stop" ? (input.last_assistant_message ?? "") : "");
  return {
    kind,
    source: "hook",
    session,
    title: truncate(input.title?.trim() || TITLES[kind], LIMITS.maxTitle),
    message: truncate(message.trim(), LIMITS.maxMessage),
  };
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
