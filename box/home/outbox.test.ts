import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { AgentEventDraft } from "../protocol.ts";
import { Outbox } from "./outbox.ts";

const draft = (msg: string): AgentEventDraft => ({
  type: "log",
  at: new Date().toISOString(),
  payload: { level: "info", msg, fields: {} },
});
const tmp = () => join(mkdtempSync(join(tmpdir(), "berth-outbox-")), "state", "outbox.jsonl");

describe("Outbox", () => {
  it("numbers events from 1 without gaps and keeps them across a reopen", () => {
    const path = tmp();
    const a = Outbox.open(path);
    expect(a.append(draft("one"))?.seq).toBe(1);
    expect(a.append(draft("two"))?.seq).toBe(2);
    a.close();
    const b = Outbox.open(path);
    expect(b.peek().map((e) => [e.seq, e.type === "log" && e.payload.msg])).toEqual([
      [1, "one"],
      [2, "two"],
    ]);
    expect(b.append(draft("three"))?.seq).toBe(3);
    b.close();
  });

  it("forgets acknowledged events, durably", () => {
    const path = tmp();
    const a = Outbox.open(path);
    for (const m of ["a", "b", "c"]) a.append(draft(m));
    a.markSent(3);
    expect(a.reconcile(2)).toEqual({ acked: 2, renumbered: false });
    a.close();
    const b = Outbox.open(path);
    expect(b.peek().map((e) => e.seq)).toEqual([3]);
    expect(b.ackedThrough).toBe(2);
    b.close();
  });

  it("renumbers pending events when the control plane is behind (a new instance)", () => {
    const path = tmp();
    const a = Outbox.open(path);
    for (const m of ["a", "b", "c"]) a.append(draft(m));
    a.markSent(3);
    a.reconcile(1);
    expect(a.reconcile(0)).toEqual({ acked: 0, renumbered: true });
    expect(a.peek().map((e) => e.seq)).toEqual([1, 2]);
    expect(a.append(draft("d"))?.seq).toBe(3);
    a.close();
    expect(
      Outbox.open(path)
        .peek()
        .map((e) => e.seq),
    ).toEqual([1, 2, 3]);
  });

  it("keeps events it never sent even when the control plane has seen their numbers (lost journal)", () => {
    const a = Outbox.open(tmp());
    a.append(draft("x"));
    a.append(draft("y"));
    // Nothing was sent yet; the control plane already holds seq 1..10 from before our journal was lost.
    expect(a.reconcile(10)).toEqual({ acked: 0, renumbered: true });
    expect(a.peek().map((e) => e.seq)).toEqual([11, 12]);
    a.close();
  });

  it("drops a torn last line and moves a corrupt journal aside instead of refusing to start", () => {
    const path = tmp();
    const a = Outbox.open(path);
    a.append(draft("kept"));
    a.close();
    appendFileSync(path, '{"t":"e","e":{"seq":2,');
    const b = Outbox.open(path);
    expect(b.peek().map((e) => e.seq)).toEqual([1]);
    expect(b.append(draft("next"))?.seq).toBe(2);
    b.close();
    expect(readFileSync(path, "utf8").endsWith("\n")).toBe(true);

    writeFileSync(path, "not json\n");
    let moved = "";
    const c = Outbox.open(path, { onCorrupt: (to) => (moved = to) });
    expect(c.size).toBe(0);
    expect(existsSync(moved)).toBe(true);
    c.close();
  });

  it("drops log events past the limit but keeps notifications up to twice the limit", () => {
    const path = tmp();
    const o = Outbox.open(path, { maxPending: 2, sync: false });
    o.append(draft("1"));
    o.append(draft("2"));
    expect(o.append(draft("3"))).toBeNull();
    expect(o.dropped).toBe(1);
    const n = o.append({
      type: "notification",
      at: new Date().toISOString(),
      payload: { kind: "stop", source: "hook", session: null, title: "t", message: "", dedupeKey: "k" },
    });
    expect(n?.seq).toBe(3);
    o.close();
  });

  it("refuses an event that breaks the schema, naming it", () => {
    const o = Outbox.open(tmp());
    expect(() =>
      o.append({ ...draft("x"), payload: { level: "loud", msg: "x", fields: {} } } as never),
    ).toThrow(/invalid log event/);
    o.close();
  });

  it("bounds batches by count and bytes", () => {
    const o = Outbox.open(tmp(), { sync: false });
    for (let i = 0; i < 10; i++) o.append(draft("y".repeat(1000)));
    expect(o.peek(3)).toHaveLength(3);
    expect(o.peek(100, 2500)).toHaveLength(2);
    o.close();
    expect(readdirSync(join(o.path, "..")).every((f) => !f.endsWith(".tmp"))).toBe(true);
  });
});
