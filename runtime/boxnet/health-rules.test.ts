import { describe, expect, it } from "vitest";
import { describeFailure, type HealthCounters, nextHealth } from "./health-rules.ts";

const t = { failThreshold: 3, recoverThreshold: 2 };

/** Feeds a sequence of run verdicts through the rules, applying transitions to the state as the job does. */
function run(verdicts: boolean[], state = "ready") {
  let c: HealthCounters = { failures: 0, successes: 0, markedUnhealthy: false };
  const states: string[] = [];
  for (const passed of verdicts) {
    const next = nextHealth(c, passed, state, t);
    if (next.transition) state = next.transition;
    c = next;
    states.push(state);
  }
  return states;
}

describe("health rules", () => {
  it("turns unhealthy only after N consecutive failed runs", () => {
    expect(run([false, false, true, false, false, true])).toEqual(Array(6).fill("ready"));
    expect(run([false, false, false])).toEqual(["ready", "ready", "unhealthy"]);
  });

  it("recovers only after M consecutive passing runs, so a lucky probe does not flap the state", () => {
    const states = run([false, false, false, true, false, true, true]);
    expect(states).toEqual(["ready", "ready", "unhealthy", "unhealthy", "unhealthy", "unhealthy", "ready"]);
  });

  it("leaves a workspace the probes did not mark unhealthy to its agent", () => {
    // Unhealthy because the agent never reported ready (the reconciler): passing probes do not overrule it.
    expect(run([true, true, true], "unhealthy")).toEqual(["unhealthy", "unhealthy", "unhealthy"]);
  });

  it("never moves a workspace in another state", () => {
    expect(run([false, false, false, false], "hibernating")).toEqual(Array(4).fill("hibernating"));
  });

  it("says which check failed and whether the agent still heartbeats", () => {
    expect(
      describeFailure({
        http: { ok: true, detail: "ok" },
        handshake: { ok: false, detail: "upgrade refused (401)" },
        heartbeat: { ok: true, detail: "last 3s ago" },
      }),
    ).toBe("handshake: upgrade refused (401); agent still heartbeating");
    expect(
      describeFailure({
        http: { ok: false, detail: "unreachable" },
        handshake: { ok: false, detail: "unreachable" },
        heartbeat: { ok: false, detail: "none for 95s" },
      }),
    ).toBe("http: unreachable; handshake: unreachable; agent not heartbeating (none for 95s)");
  });
});
