/**
 * The outbox on a full disk. The disk is simulated at the `writeSync` call (module mock, this file only) the
 * way write(2) behaves: the write that meets the end of the space stores what fits and returns a short count,
 * and every write after it fails with ENOSPC until space is freed.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import type { AgentEventDraft } from "../protocol.ts";
import { Outbox } from "./outbox.ts";

const disk = { full: false, spaceLeft: 0 };

vi.mock("node:fs", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs")>();
  const writeSync = ((fd: number, data: string | NodeJS.ArrayBufferView, ...rest: unknown[]) => {
    if (!disk.full) return (real.writeSync as (...a: unknown[]) => number)(fd, data, ...rest);
    const bytes =
      typeof data === "string"
        ? Buffer.from(data)
        : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (disk.spaceLeft === 0)
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    const fits = Math.min(disk.spaceLeft, bytes.length);
    disk.spaceLeft -= fits;
    return real.writeSync(fd, bytes.subarray(0, fits));
  }) as typeof real.writeSync;
  return { ...real, default: { ...real, writeSync }, writeSync };
});

const draft = (msg: string): AgentEventDraft => ({
  type: "log",
  at: new Date().toISOString(),
  payload: { level: "info", msg, fields: {} },
});
const msgs = (o: Outbox) => o.peek().map((e) => [e.seq, e.type === "log" && e.payload.msg]);

describe("Outbox on a full disk", () => {
  it("keeps the journal whole: what it accepted survives a restart, and nothing else is in it", () => {
    const path = join(mkdtempSync(join(tmpdir(), "berth-outbox-")), "outbox.jsonl");
    const corrupt: string[] = [];
    const a = Outbox.open(path, { sync: false });
    a.append(draft("one"));
    a.append(draft("two"));

    // The disk fills up in the middle of the third event's line.
    disk.full = true;
    disk.spaceLeft = 10;
    const accepted: string[] = ["one", "two"];
    for (const msg of ["three", "four"]) {
      try {
        if (a.append(draft(msg))) accepted.push(msg);
      } catch {
        // refused: the caller logs "cannot store event"
      }
    }
    expect(disk.spaceLeft).toBe(0);
    // Space is freed; the agent goes on appending, then restarts.
    disk.full = false;
    a.append(draft("five"));
    accepted.push("five");
    a.close();

    const b = Outbox.open(path, { sync: false, onCorrupt: (movedTo) => corrupt.push(movedTo) });
    expect(corrupt).toEqual([]);
    expect(msgs(b).map(([, m]) => m)).toEqual(accepted);
    expect(msgs(b).map(([seq]) => seq)).toEqual(accepted.map((_, i) => i + 1));
    b.close();
  });

  it("never replaces the journal with a compaction the disk could hold only part of", () => {
    const path = join(mkdtempSync(join(tmpdir(), "berth-outbox-")), "outbox.jsonl");
    const a = Outbox.open(path, { sync: false });
    for (const msg of ["one", "two", "three"]) a.append(draft(msg));

    // Replacing a refused event rewrites the journal; the disk has room for little more than its header.
    disk.full = true;
    disk.spaceLeft = 60;
    try {
      a.replaceWithRejection(2, "refused");
    } catch {
      // refused for lack of space: the journal on disk must still be the previous one
    }
    disk.full = false;
    a.close();

    const corrupt: string[] = [];
    const b = Outbox.open(path, { sync: false, onCorrupt: (movedTo) => corrupt.push(movedTo) });
    expect(corrupt).toEqual([]);
    expect(msgs(b).map(([seq]) => seq)).toEqual([1, 2, 3]);
    expect(msgs(b).map(([, m]) => m)).toEqual(["one", expect.any(String), "three"]);
    b.close();
  });
});
