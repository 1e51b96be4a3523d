import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { NotificationPayload } from "../protocol.ts";
import { NotificationDeduper } from "./dedupe.ts";

let out: NotificationPayload[];
let d: NotificationDeduper;
beforeEach(() => {
  vi.useFakeTimers();
  out = [];
  d = new NotificationDeduper({ emit: (n) => out.push(n), windowMs: 10_000, holdMs: 1500 });
});
afterEach(() => vi.useRealTimers());

const hook = (session: string | null, message = "Claude needs your permission to use Bash") =>
  ({ kind: "permission_prompt", source: "hook", session, title: "t", message }) as const;
const osc = (session: string) => ({ kind: "osc", source: "osc9", session, title: "t", message: "" }) as const;

describe("NotificationDeduper", () => {
  it("a hook then its OSC 9 yields one notification", () => {
    expect(d.hook(hook("s1"))).toBe("emitted");
    vi.advanceTimersByTime(300);
    expect(d.terminal(osc("s1"))).toBe("deduped");
    vi.advanceTimersByTime(5000);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ source: "hook", session: "s1" });
    expect(out[0]!.dedupeKey).toMatch(/^n-[0-9a-f-]{36}$/);
  });

  it("an OSC 9 that arrives before its hook is held and then dropped", () => {
    expect(d.terminal(osc("s1"))).toBe("held");
    vi.advanceTimersByTime(800);
    d.hook(hook("s1"));
    vi.advanceTimersByTime(5000);
    expect(out.map((n) => n.source)).toEqual(["hook"]);
    expect(d.stats).toEqual({ emitted: 1, deduped: 1 });
  });

  it("an OSC 9 with no hook is emitted after the hold; another session is independent", () => {
    d.hook(hook("s2"));
    d.terminal(osc("s1"));
    vi.advanceTimersByTime(1499);
    expect(out).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(out.map((n) => [n.source, n.session])).toEqual([
      ["hook", "s2"],
      ["osc9", "s1"],
    ]);
  });

  it("collapses a burst of terminal signals and repeated identical hooks; a later one counts again", () => {
    d.terminal(osc("s1"));
    d.terminal({ ...osc("s1"), source: "bel" });
    d.hook(hook(null));
    d.hook(hook(null));
    vi.advanceTimersByTime(2000);
    expect(out).toHaveLength(2);
    vi.advanceTimersByTime(10_000);
    d.terminal(osc("s1"));
    d.hook(hook(null));
    vi.advanceTimersByTime(2000);
    expect(out).toHaveLength(4);
  });

  it("flush emits what is still held", () => {
    d.terminal(osc("s1"));
    d.flush();
    expect(out).toHaveLength(1);
  });
});
