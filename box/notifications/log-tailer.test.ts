import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LogTailer } from "./log-tailer.ts";

function setup() {
  const dir = mkdtempSync(join(tmpdir(), "berth-tail-"));
  const got: string[] = [];
  const resets: string[] = [];
  const t = new LogTailer({
    dir,
    onData: (s, c) => got.push(`${s}:${c.toString()}`),
    onReset: (s) => resets.push(s),
  });
  return { dir, got, resets, t };
}

describe("LogTailer", () => {
  it("skips what existed at start, then follows appends and new files from their start", () => {
    const { dir, got, t } = setup();
    writeFileSync(join(dir, "old.log"), "history");
    writeFileSync(join(dir, "ignored.txt"), "x");
    writeFileSync(join(dir, "Bad#Name.log"), "x");
    t.poll();
    appendFileSync(join(dir, "old.log"), "new");
    writeFileSync(join(dir, "fresh.log"), "hello");
    t.poll();
    expect(got.sort()).toEqual(["fresh:hello", "old:new"]);
    t.stop();
  });

  it("reads a rotated file to its end and continues with the new one", () => {
    const { dir, got, resets, t } = setup();
    const log = join(dir, "s1.log");
    writeFileSync(log, "");
    t.poll();
    appendFileSync(log, "a");
    t.poll();
    appendFileSync(log, "b-before-rotate");
    renameSync(log, `${log}.1`);
    writeFileSync(log, "c-after");
    t.poll();
    expect(got).toEqual(["s1:a", "s1:b-before-rotate", "s1:c-after"]);
    expect(resets).toEqual([]);
    t.stop();
  });

  it("restarts at 0 when the file is truncated in place, and says so", () => {
    const { dir, got, resets, t } = setup();
    const log = join(dir, "s1.log");
    writeFileSync(log, "");
    t.poll();
    appendFileSync(log, "0123456789");
    t.poll();
    truncateSync(log, 0);
    appendFileSync(log, "xy");
    t.poll();
    expect(got).toEqual(["s1:0123456789", "s1:xy"]);
    expect(resets).toEqual(["s1"]);
    t.stop();
  });

  it("ignores symlinks and non-files planted in the capture directory", () => {
    const { dir, got, t } = setup();
    t.poll();
    symlinkSync("/dev/zero", join(dir, "zero.log"));
    writeFileSync(join(dir, "target"), "\x1b]9;from a link\x07");
    symlinkSync(join(dir, "target"), join(dir, "linked.log"));
    mkdirSync(join(dir, "adir.log"));
    t.poll();
    expect(got).toEqual([]);
    t.stop();
  });

  it("refuses to follow the capture directory itself through a symlink, saying so once", () => {
    const real = mkdtempSync(join(tmpdir(), "berth-real-"));
    writeFileSync(join(real, "root.log"), "");
    const parent = mkdtempSync(join(tmpdir(), "berth-tail-"));
    symlinkSync(real, join(parent, "sessions"));
    const errors: string[] = [];
    const got: string[] = [];
    const t = new LogTailer({
      dir: join(parent, "sessions"),
      onData: (s) => got.push(s),
      onError: (e) => errors.push(e.message),
    });
    t.poll();
    appendFileSync(join(real, "root.log"), "data");
    t.poll();
    t.poll();
    expect(got).toEqual([]);
    expect(errors).toEqual([`${join(parent, "sessions")} is a symlink; not following it`]);
    t.stop();
  });

  it("resumes where the last run stopped, for the same file only", () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-tail-"));
    const statePath = join(mkdtempSync(join(tmpdir(), "berth-state-")), "tail.json");
    const got: string[] = [];
    const make = () => new LogTailer({ dir, statePath, onData: (s, c) => got.push(`${s}:${c}`) });
    writeFileSync(join(dir, "a.log"), "old");
    writeFileSync(join(dir, "b.log"), "old");
    const first = make();
    first.poll();
    appendFileSync(join(dir, "a.log"), "-seen");
    first.stop();
    // While the agent is down: a.log grows, b.log is replaced by a new file.
    appendFileSync(join(dir, "a.log"), "-while-down");
    renameSync(join(dir, "b.log"), join(dir, "b.log.1"));
    writeFileSync(join(dir, "b.log"), "new-file-before-restart");
    const second = make();
    second.poll();
    expect(got).toEqual(["a:-seen", "a:-while-down", "b:new-file-before-restart"]);
    second.stop();
  });

  it("reports an error while finishing a removed file instead of throwing it out of the poll timer", () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-tail-"));
    const got: string[] = [];
    const errors: string[] = [];
    const t = new LogTailer({
      dir,
      // Stands in for any failure while draining (a read error on a failing volume, a consumer's bug).
      onData: (s, c) => {
        if (s === "gone") throw new Error("cannot handle gone's output");
        got.push(`${s}:${c.toString()}`);
      },
      onError: (err) => errors.push(err.message),
    });
    writeFileSync(join(dir, "gone.log"), "");
    writeFileSync(join(dir, "kept.log"), "");
    t.poll();
    appendFileSync(join(dir, "gone.log"), "last words");
    rmSync(join(dir, "gone.log"));
    appendFileSync(join(dir, "kept.log"), "still here");
    // poll() runs in a setInterval callback (and in stop(), at shutdown): a throw there kills the agent.
    expect(() => t.poll()).not.toThrow();
    expect(errors).toEqual(["cannot handle gone's output"]);
    expect(got).toEqual(["kept:still here"]);
    appendFileSync(join(dir, "kept.log"), "!");
    expect(() => t.stop()).not.toThrow();
    expect(got).toEqual(["kept:still here", "kept:!"]);
  });
});
