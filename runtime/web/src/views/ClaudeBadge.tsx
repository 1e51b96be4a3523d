import type { ClaudeStatus, Session } from "../api.ts";
import { ago } from "../format.ts";

const TONE: Record<ClaudeStatus["state"], string> = {
  working: "busy",
  needs_you: "attn",
  idle: "idle",
  error: "bad",
  ended: "idle",
};

/** What a badge says: "needs you: Bash", "error: rate limit", "working". */
export function claudeLabel(c: ClaudeStatus): string {
  const detail = c.detail?.replaceAll("_", " ");
  switch (c.state) {
    case "working":
      return detail ? `working (${detail})` : "working";
    case "needs_you":
      return detail && detail !== "permission" ? `needs you: ${detail}` : "needs you";
    case "idle":
      return "idle";
    case "error":
      return detail ? `error: ${detail}` : "error";
    case "ended":
      return "Claude exited";
  }
}

/** Claude's state in a session, as a small pill; nothing until Claude has said anything. */
export function ClaudeBadge({ claude }: { claude: ClaudeStatus | null | undefined }) {
  if (!claude) return null;
  const label = claudeLabel(claude);
  return (
    <span
      class={`badge badge-${TONE[claude.state]} badge-claude`}
      role="status"
      aria-label={`Claude: ${label}, since ${ago(claude.since)}`}
      title={`since ${ago(claude.since)}`}
    >
      <span class="badge-dot" aria-hidden="true" />
      {label}
    </span>
  );
}

const RANK: Record<ClaudeStatus["state"], number> = { needs_you: 4, error: 3, working: 2, idle: 1, ended: 0 };

/** A workspace's badge: the state of its session that most wants attention (needs you > error > working). */
export function workspaceClaude(sessions: Session[]): ClaudeStatus | null {
  let best: ClaudeStatus | null = null;
  for (const s of sessions)
    if (s.claude && (!best || RANK[s.claude.state] > RANK[best.state])) best = s.claude;
  return best;
}
