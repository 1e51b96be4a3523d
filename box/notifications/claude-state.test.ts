import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { ClaudeStatePayload, NotificationPayload } from "../protocol.ts";
import { ClaudeStateTracker, errorKind } from "./claude-state.ts";
import { claudeHookInput } from "./hook-input.ts";
import { NotificationCenter } from "./notification-center.ts";

const hook = (event: Record<string, unknown>) => claudeHookInput.parse({ session_id: "c", ...event });

function center() {
  const notes: NotificationPayload[] = [];
  const states: Array<ClaudeStatePayload & { at: Date }> = [];
  const c = new NotificationCenter({
    publish: (n) => notes.push(n),
    publishState: (s, at) => states.push({ ...s, at }),
    log: pino({ level: "silent" }),
  });
  return { c, notes, states };
}

describe("Claude state from hooks", () => {
  it("goes working → needs you (naming the tool) → working → idle → error, one notification per real event", () => {
    const { c, notes, states } = center();
    c.fromHook(hook({ hook_event_name: "SessionStart", source: "startup" }), "main");
    c.fromHook(hook({ hook_event_name: "UserPromptSubmit", prompt: "fix it" }), "main");
    c.fromHook(
      hook({
        hook_event_name: "PermissionRequest",
        tool_name: "Bash",
        tool_input: { command: "npm test\nx" },
      }),
      "main",
    );
    // ~6 s later Claude Code's own Notification hook says the same thing: no second notification.
    expect(
      c.fromHook(
        hook({
          hook_event_name: "Notification",
          notification_type: "permission_prompt",
          message: "Claude needs your permission",
        }),
        "main",
      ),
    ).toBe("ignored");
    c.fromHook(hook({ hook_event_name: "PostToolUse", tool_name: "Bash" }), "main");
    c.fromHook(hook({ hook_event_name: "PostToolUse", tool_name: "Read" }), "main");
    c.fromHook(hook({ hook_event_name: "Stop", stop_hook_active: false }), "main");
    // ~60 s after Stop, idle_prompt for the same moment: dropped.
    expect(
      c.fromHook(
        hook({ hook_event_name: "Notification", notification_type: "idle_prompt", message: "w" }),
        "main",
      ),
    ).toBe("ignored");
    c.fromHook(hook({ hook_event_name: "UserPromptSubmit", prompt: "again" }), "main");
    c.fromHook(hook({ hook_event_name: "StopFailure", error: "rate_limit" }), "main");
    c.fromHook(hook({ hook_event_name: "SessionEnd", reason: "prompt_input_exit" }), "main");

    expect(states.map(({ at: _at, ...s }) => s)).toEqual([
      { session: "main", state: "idle", detail: null },
      { session: "main", state: "working", detail: null },
      { session: "main", state: "needs_you", detail: "Bash" },
      { session: "main", state: "working", detail: null },
      { session: "main", state: "idle", detail: null },
      { session: "main", state: "working", detail: null },
      { session: "main", state: "error", detail: "rate_limit" },
      { session: "main", state: "ended", detail: "prompt_input_exit" },
    ]);
    expect(notes.map((n) => [n.kind, n.title, n.message])).toEqual([
      ["permission_prompt", "Claude needs your permission: Bash", "npm test"],
      ["stop", "Claude finished", ""],
      ["stop_failure", "Claude stopped: rate limit", ""],
    ]);
  });

  it("a Stop with background tasks keeps it working and says nothing; a nested stop hook is ignored", () => {
    const { c, notes, states } = center();
    c.fromHook(hook({ hook_event_name: "UserPromptSubmit" }), "s");
    c.fromHook(hook({ hook_event_name: "Stop", background_tasks: [{ id: "t1" }] }), "s");
    c.fromHook(hook({ hook_event_name: "Stop", stop_hook_active: true }), "s");
    expect(states.map((s) => [s.state, s.detail])).toEqual([
      ["working", null],
      ["working", "background tasks"],
    ]);
    expect(notes).toEqual([]);
  });

  it("without earlier hooks (an older Claude Code), the Notification hook still notifies and sets the state", () => {
    const { c, notes, states } = center();
    c.fromHook(hook({ hook_event_name: "Notification", notification_type: "permission_prompt" }), "s");
    // A second prompt with only the Notification hook is a new event, not an echo.
    c.fromHook(
      hook({ hook_event_name: "Notification", notification_type: "permission_prompt", message: "again" }),
      "s",
    );
    c.fromHook(hook({ hook_event_name: "Notification", notification_type: "idle_prompt" }), "t");
    expect(notes.map((n) => n.kind)).toEqual(["permission_prompt", "permission_prompt", "idle_prompt"]);
    expect(states.map((s) => [s.session, s.state])).toEqual([
      ["s", "needs_you"],
      ["t", "idle"],
    ]);
  });

  it("an interrupt (no Stop) becomes idle once the working pane has been quiet long enough", () => {
    let now = 1_000_000;
    const changes: ClaudeStatePayload[] = [];
    const t = new ClaudeStateTracker({ publish: (s) => changes.push(s), quietMs: 60_000, now: () => now });
    t.onHook(hook({ hook_event_name: "UserPromptSubmit" }), "s");
    now += 50_000;
    t.noteOutput("s"); // the spinner redraws while Claude works
    now += 50_000;
    t.sweep();
    expect(t.get("s")?.state).toBe("working");
    now += 10_000;
    t.sweep();
    expect(t.get("s")).toMatchObject({ state: "idle", detail: "quiet", since: now });
    t.sweep();
    expect(changes.map((c) => c.state)).toEqual(["working", "idle"]);
  });

  it("keeps its states across a restart, so an interrupt after it still falls back to idle", () => {
    const statePath = join(mkdtempSync(join(tmpdir(), "berth-claude-state-")), "claude-states.json");
    let now = 5_000_000;
    const first = new ClaudeStateTracker({ publish: () => {}, quietMs: 60_000, now: () => now, statePath });
    first.onHook(hook({ hook_event_name: "UserPromptSubmit" }), "s");
    const changes: ClaudeStatePayload[] = [];
    const second = new ClaudeStateTracker({
      publish: (c) => changes.push(c),
      quietMs: 60_000,
      now: () => now,
      statePath,
    });
    expect(second.get("s")).toMatchObject({ state: "working", since: 5_000_000 });
    now += 61_000;
    second.sweep();
    expect(changes).toEqual([{ session: "s", state: "idle", detail: "quiet" }]);
    writeFileSync(statePath, "{ not json");
    expect(new ClaudeStateTracker({ publish: () => {}, statePath }).get("s")).toBeUndefined();
  });

  it("reads the error kind loosely", () => {
    expect(errorKind("overloaded")).toBe("overloaded");
    expect(errorKind({ type: "billing_error", message: "x" })).toBe("billing_error");
    expect(errorKind(undefined)).toBe("unknown");
  });
});
