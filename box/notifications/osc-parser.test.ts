import { describe, expect, it } from "vitest";
import { OscParser, type TerminalSignal } from "./osc-parser.ts";

const bytes = (s: string) => Buffer.from(s, "utf8");

/** Feeds the text in every possible two-way split and in single bytes; all must agree. */
function parseAllSplits(text: string): TerminalSignal[] {
  const whole = new OscParser().push(bytes(text));
  const b = bytes(text);
  for (let i = 0; i <= b.length; i++) {
    const p = new OscParser();
    const got = [...p.push(b.subarray(0, i)), ...p.push(b.subarray(i))];
    expect(got, `split at ${i}`).toEqual(whole);
  }
  const p = new OscParser();
  const single = [...b].flatMap((x) => p.push(Uint8Array.of(x)));
  expect(single).toEqual(whole);
  return whole;
}

describe("OscParser", () => {
  it("finds OSC 9 terminated by BEL, and does not count that BEL as a bell", () => {
    expect(parseAllSplits("hello \x1b]9;Claude needs your permission\x07 world")).toEqual([
      { type: "osc9", message: "Claude needs your permission" },
    ]);
  });

  it("finds OSC 9 terminated by ST (ESC \\)", () => {
    expect(parseAllSplits("\x1b]9;done ✓\x1b\\")).toEqual([{ type: "osc9", message: "done ✓" }]);
  });

  it("finds OSC 777 notify with title and body", () => {
    expect(parseAllSplits("\x1b]777;notify;Claude Code;Waiting; for input\x07")).toEqual([
      { type: "osc777", title: "Claude Code", body: "Waiting; for input" },
    ]);
  });

  it("counts a BEL outside any sequence, including inside CSI, but not inside DCS/APC strings", () => {
    expect(parseAllSplits("a\x07b\x1b[3\x07m\x1b_apc\x07data\x1b\\\x1bPq\x07\x1b\\")).toEqual([
      { type: "bel" },
      { type: "bel" },
    ]);
  });

  it("ignores other OSCs (title, hyperlinks, cwd) and ConEmu OSC 9 subcommands", () => {
    expect(
      parseAllSplits(
        "\x1b]0;my title\x07\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\x1b]9;4;1;50\x07\x1b]7;file:///\x07",
      ),
    ).toEqual([]);
  });

  it("unwraps tmux DCS passthrough with doubled ESCs", () => {
    expect(parseAllSplits("\x1bPtmux;\x1b\x1b]9;from inside tmux\x07\x1b\\")).toEqual([
      { type: "osc9", message: "from inside tmux" },
    ]);
    expect(parseAllSplits("\x1bPtmux;\x1b\x1b]9;st inside\x1b\x1b\\\x1b\\after\x07")).toEqual([
      { type: "osc9", message: "st inside" },
      { type: "bel" },
    ]);
  });

  it("abandons an OSC cut short by CAN or by a new escape sequence", () => {
    expect(parseAllSplits("\x1b]9;partial\x18\x07")).toEqual([{ type: "bel" }]);
    expect(parseAllSplits("\x1b]9;partial\x1b[0m\x1b]9;second\x07")).toEqual([
      { type: "osc9", message: "second" },
    ]);
  });

  it("discards an oversized OSC without buffering it, then recovers", () => {
    const p = new OscParser({ maxOscBytes: 16 });
    expect(p.push(bytes(`\x1b]9;${"x".repeat(1000)}\x07`))).toEqual([]);
    expect(p.push(bytes("\x1b]9;ok\x07"))).toEqual([{ type: "osc9", message: "ok" }]);
  });

  it("strips control characters from messages and survives reset mid-sequence", () => {
    const p = new OscParser();
    expect(p.push(bytes("\x1b]9;half"))).toEqual([]);
    p.reset();
    expect(p.push(bytes(" not osc\x07"))).toEqual([{ type: "bel" }]);
    expect(new OscParser().push(bytes("\x1b]9;a\tb\x7fc\x07"))).toEqual([{ type: "osc9", message: "a b c" }]);
  });

  it("does not treat UTF-8 continuation bytes as C1 controls", () => {
    // U+009D would be the 8-bit OSC introducer; in UTF-8 it is C2 9D and must not start an OSC.
    expect(parseAllSplits("\u009d9;nope\x07 é\u009c")).toEqual([{ type: "bel" }]);
  });
});
