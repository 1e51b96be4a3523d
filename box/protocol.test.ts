import { describe, expect, it } from "vitest";
import {
  type AgentEvent,
  describeIssues,
  eventsRequest,
  heartbeatResponse,
  LIMITS,
  planEventBatch,
  RESTORE_PATH_RE,
} from "./protocol.ts";

const log = (seq: number): AgentEvent => ({
  seq,
  at: "2026-11-23T21:00:00.000Z",
  type: "log",
  payload: { level: "info", msg: `m${seq}`, fields: {} },
});

describe("planEventBatch", () => {
  it("applies the contiguous next events and advances ackedThrough", () => {
    const plan = planEventBatch(0, [log(1), log(2), log(3)]);
    expect(plan.toApply.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(plan).toMatchObject({ ackedThrough: 3, replayed: 0 });
  });

  it("acknowledges replayed seqs without applying them again", () => {
    const plan = planEventBatch(3, [log(2), log(3), log(4)]);
    expect(plan.toApply.map((e) => e.seq)).toEqual([4]);
    expect(plan).toMatchObject({ ackedThrough: 4, replayed: 2 });
  });

  it("stops at a gap and acknowledges only the contiguous prefix", () => {
    const plan = planEventBatch(3, [log(4), log(6), log(7)]);
    expect(plan.toApply.map((e) => e.seq)).toEqual([4]);
    expect(plan.ackedThrough).toBe(4);
  });
});

describe("eventsRequest limits", () => {
  it("rejects an oversized title with a message naming the field", () => {
    const result = eventsRequest.safeParse({
      events: [
        {
          seq: 1,
          at: "2026-11-23T21:00:00Z",
          type: "notification",
          payload: {
            kind: "stop",
            source: "hook",
            session: "s1",
            title: "x".repeat(LIMITS.maxTitle + 1),
            message: "",
            dedupeKey: "k1",
          },
        },
      ],
    });
    expect(result.success).toBe(false);
    expect(describeIssues(result.error!)).toMatch(
      /events\.0\.payload\.title: must be at most 200 characters/,
    );
  });

  it("rejects too many events, an empty batch, and non-contiguous seqs", () => {
    const many = Array.from({ length: LIMITS.maxEventsPerBatch + 1 }, (_, i) => log(i + 1));
    expect(describeIssues(eventsRequest.safeParse({ events: many }).error!)).toMatch(/at most 500 events/);
    expect(describeIssues(eventsRequest.safeParse({ events: [] }).error!)).toMatch(/at least one event/);
    expect(describeIssues(eventsRequest.safeParse({ events: [log(1), log(3)] }).error!)).toMatch(
      /events\.1\.seq: seq must increase by exactly 1/,
    );
  });

  it("rejects an unknown event type and a bad session name", () => {
    const bad = eventsRequest.safeParse({ events: [{ ...log(1), type: "telemetry" }] });
    expect(bad.success).toBe(false);
    const name = heartbeatResponse.safeParse({ eventsAckedThrough: 0, sessions: ["ok", "x#(id)"] });
    expect(describeIssues(name.error!)).toMatch(/sessions\.1: session name must match/);
  });

  it("fills heartbeat response defaults so the agent can rely on them", () => {
    expect(heartbeatResponse.parse({ eventsAckedThrough: 5 })).toEqual({
      backup: null,
      restore: null,
      sendKeys: [],
      guided: [],
      onboard: [],
      acks: { completed: [] },
      eventsAckedThrough: 5,
    });
  });
});

describe("restore paths", () => {
  it("takes user/ and paths below it, nothing else", () => {
    for (const ok of ["user", "user/projects", "user/projects/app/a b.txt", "user/.claude", "user/..x"])
      expect(RESTORE_PATH_RE.test(ok), ok).toBe(true);
    for (const bad of [
      "",
      "/user",
      "users",
      "user/",
      "user/../etc",
      "user/./x",
      "user/a/..",
      "system/state",
      "../x",
      "user//a",
    ])
      expect(RESTORE_PATH_RE.test(bad), bad).toBe(false);
  });
});
