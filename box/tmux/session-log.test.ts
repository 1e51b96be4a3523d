import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { rotatingLogPipeCommand, sessionLogPath } from "./session-log.ts";

const dir = mkdtempSync(join("/tmp", "berth-slog-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the helper the way tmux would (sh -c after its own expansion, which turns %% and ## back). */
function runHelper(command: string, input: Buffer): Promise<void> {
  const expanded = command.replaceAll("%%", "%").replaceAll("##", "#");
  return new Promise((resolve, reject) => {
    const child = execFile("/bin/sh", ["-c", expanded], (err) => (err ? reject(err) : resolve()));
    child.stdin!.end(input);
  });
}

describe("session log path and helper", () => {
  it("names the log by session and refuses bad names", () => {
    expect(sessionLogPath("/w/system/logs", "ws-1")).toBe("/w/system/logs/sessions/ws-1.log");
    expect(() => sessionLogPath("/w/system/logs", "../x")).toThrow(/invalid session name/);
  });

  it("refuses nonsensical rotation settings", () => {
    expect(() => rotatingLogPipeCommand("/x.log", { maxBytes: 0, keep: 1 })).toThrow(RangeError);
    expect(() => rotatingLogPipeCommand("/x.log", { maxBytes: 10, keep: 0 })).toThrow(RangeError);
    expect(() => rotatingLogPipeCommand("/x.log", { maxBytes: 1.5, keep: 1 })).toThrow(RangeError);
  });

  it("splits a stream into full files without losing or reordering a byte", async () => {
    const log = join(dir, "it's #1 100%.log");
    const input = Buffer.from(
      Array.from({ length: 2500 }, (_, i) => String.fromCharCode(33 + (i % 90))).join(""),
    );
    await runHelper(rotatingLogPipeCommand(log, { maxBytes: 1000, keep: 5 }), input);
    const files = readdirSync(dir).sort();
    expect(files).toEqual(["it's #1 100%.log", "it's #1 100%.log.1", "it's #1 100%.log.2"]);
    const joined = Buffer.concat([`${log}.2`, `${log}.1`, log].map((f) => readFileSync(f)));
    expect(joined.equals(input)).toBe(true);
    expect(readFileSync(`${log}.1`).length).toBe(1000);
  });

  it("appends to an existing file and rotates it once full", async () => {
    const log = join(dir, "append.log");
    await runHelper(rotatingLogPipeCommand(log, { maxBytes: 10, keep: 1 }), Buffer.from("12345"));
    await runHelper(rotatingLogPipeCommand(log, { maxBytes: 10, keep: 1 }), Buffer.from("6789abcdef"));
    expect(readFileSync(`${log}.1`, "utf8")).toBe("123456789a");
    expect(readFileSync(log, "utf8")).toBe("bcdef");
  });
});
