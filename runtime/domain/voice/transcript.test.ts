import { describe, expect, it } from "vitest";
import { cleanTranscript } from "./transcript.ts";

describe("cleanTranscript", () => {
  it("removes control characters and bidi overrides, and turns line breaks into spaces", () => {
    expect(cleanTranscript("echo a\u001b[2Jb\u0007c\r\nd\te")).toBe("echo a[2Jbc d e");
    expect(cleanTranscript("\u0003\u0004rm\u009b -rf\u007f")).toBe("rm -rf");
    expect(cleanTranscript("abc\u202edef\u2066g\u2028h")).toBe("abcdefgh");
  });

  it("keeps printable text of any script, collapses spaces and trims", () => {
    expect(cleanTranscript("  Grüße,   世界 — ok?  ")).toBe("Grüße, 世界 — ok?");
    expect(cleanTranscript("\u0000\r\n")).toBe("");
  });
});
