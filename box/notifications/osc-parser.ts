/**
 * A streaming parser for terminal output captured by `tmux pipe-pane`, finding the notification signals a
 * program sends its terminal: OSC 9 (`ESC ] 9 ; msg`), OSC 777 (`ESC ] 777 ; notify ; title ; body`) and a
 * bare BEL. It is a byte-level state machine after the VT500 parser model, so that:
 * - the BEL that terminates an OSC is not a bell, and neither is a BEL inside a DCS/APC/PM/SOS string;
 * - sequences may be split across chunks at any byte;
 * - ST (`ESC \`) terminates strings too, and CAN/SUB abort them;
 * - tmux DCS passthrough (`ESC P tmux; <payload with ESC doubled> ESC \`), which Claude Code uses inside
 *   tmux, is unwrapped and its content parsed.
 * Only 7-bit controls are recognised: the stream is UTF-8, where 0x80-0x9F are continuation bytes.
 */

export type TerminalSignal =
  | { type: "osc9"; message: string }
  | { type: "osc777"; title: string; body: string }
  | { type: "bel" };

const ESC = 0x1b;
const BEL = 0x07;
const CAN = 0x18;
const SUB = 0x1a;

const enum_ = {
  ground: 0,
  escape: 1,
  escapeIntermediate: 2,
  csi: 3,
  osc: 4,
  oscEscape: 5,
  dcs: 6,
  dcsEscape: 7,
  ignoredString: 8,
  ignoredStringEscape: 9,
} as const;
type State = (typeof enum_)[keyof typeof enum_];

export interface OscParserOptions {
  /** OSC payloads longer than this are discarded (a runaway or hostile stream must not grow memory). */
  maxOscBytes?: number;
  maxDcsBytes?: number;
}

export class OscParser {
  private state: State = enum_.ground;
  private buf: number[] = [];
  private overflow = false;
  private readonly maxOsc: number;
  private readonly maxDcs: number;

  constructor(options: OscParserOptions = {}) {
    this.maxOsc = options.maxOscBytes ?? 4096;
    this.maxDcs = options.maxDcsBytes ?? 16384;
  }

  /** Forgets any partial sequence (the stream was truncated or restarted). */
  reset(): void {
    this.state = enum_.ground;
    this.buf = [];
    this.overflow = false;
  }

  push(chunk: Uint8Array): TerminalSignal[] {
    const out: TerminalSignal[] = [];
    for (const byte of chunk) this.step(byte, out);
    return out;
  }

  private step(b: number, out: TerminalSignal[]): void {
    switch (this.state) {
      case enum_.ground:
        if (b === ESC) this.state = enum_.escape;
        else if (b === BEL) out.push({ type: "bel" });
        return;
      case enum_.escape:
        if (b === 0x5d /* ] */) this.begin(enum_.osc);
        else if (b === 0x5b /* [ */) this.state = enum_.csi;
        else if (b === 0x50 /* P */) this.begin(enum_.dcs);
        else if (b === 0x58 || b === 0x5e || b === 0x5f /* X ^ _ */) this.begin(enum_.ignoredString);
        else if (b === ESC) this.state = enum_.escape;
        else if (b === BEL) {
          out.push({ type: "bel" }); // C0 controls execute inside escape sequences
        } else if (b === CAN || b === SUB) this.state = enum_.ground;
        else if (b >= 0x20 && b <= 0x2f) this.state = enum_.escapeIntermediate;
        else this.state = enum_.ground;
        return;
      case enum_.escapeIntermediate:
        if (b === ESC) this.state = enum_.escape;
        else if (b === BEL) out.push({ type: "bel" });
        else if (b === CAN || b === SUB || (b >= 0x30 && b <= 0x7e)) this.state = enum_.ground;
        return;
      case enum_.csi:
        if (b === ESC) this.state = enum_.escape;
        else if (b === BEL) out.push({ type: "bel" });
        else if (b === CAN || b === SUB || (b >= 0x40 && b <= 0x7e)) this.state = enum_.ground;
        return;
      case enum_.osc:
        if (b === BEL) this.finishOsc(out);
        else if (b === ESC) this.state = enum_.oscEscape;
        else if (b === CAN || b === SUB) this.state = enum_.ground;
        else this.collect(b, this.maxOsc);
        return;
      case enum_.oscEscape:
        if (b === 0x5c /* \ */) this.finishOsc(out);
        else {
          // Not ST: the OSC is abandoned and this ESC starts a new sequence.
          this.state = enum_.escape;
          this.step(b, out);
        }
        return;
      case enum_.dcs:
        if (b === ESC) this.state = enum_.dcsEscape;
        else if (b === CAN || b === SUB) this.state = enum_.ground;
        else this.collect(b, this.maxDcs);
        return;
      case enum_.dcsEscape:
        if (b === 0x5c) this.finishDcs(out);
        else if (b === ESC) {
          // tmux passthrough doubles every ESC of the wrapped sequence.
          this.collect(ESC, this.maxDcs);
          this.state = enum_.dcs;
        } else {
          this.state = enum_.escape;
          this.step(b, out);
        }
        return;
      case enum_.ignoredString:
        if (b === ESC) this.state = enum_.ignoredStringEscape;
        else if (b === CAN || b === SUB) this.state = enum_.ground;
        return;
      case enum_.ignoredStringEscape:
        if (b === 0x5c) this.state = enum_.ground;
        else {
          this.state = enum_.escape;
          this.step(b, out);
        }
        return;
    }
  }

  private begin(state: State): void {
    this.state = state;
    this.buf = [];
    this.overflow = false;
  }

  private collect(b: number, max: number): void {
    if (this.buf.length < max) this.buf.push(b);
    else this.overflow = true;
  }

  private finishOsc(out: TerminalSignal[]): void {
    this.state = enum_.ground;
    if (this.overflow) return;
    const signal = interpretOsc(Buffer.from(this.buf).toString("utf8"));
    if (signal) out.push(signal);
  }

  private finishDcs(out: TerminalSignal[]): void {
    this.state = enum_.ground;
    if (this.overflow) return;
    const payload = Buffer.from(this.buf);
    if (payload.subarray(0, 5).toString("latin1") !== "tmux;") return;
    // The wrapped content is complete, so a fresh parser sees it whole.
    out.push(
      ...new OscParser({ maxOscBytes: this.maxOsc, maxDcsBytes: this.maxDcs }).push(payload.subarray(5)),
    );
  }
}

function interpretOsc(payload: string): TerminalSignal | null {
  const semi = payload.indexOf(";");
  if (semi < 0) return null;
  const code = payload.slice(0, semi);
  const rest = payload.slice(semi + 1);
  if (code === "9") {
    // ConEmu overloads OSC 9 with numbered subcommands (9;4;… is a progress bar): not notifications.
    if (/^\d+(;|$)/.test(rest)) return null;
    return { type: "osc9", message: clean(rest) };
  }
  if (code === "777") {
    const [what, title = "", ...body] = rest.split(";");
    if (what !== "notify") return null;
    return { type: "osc777", title: clean(title), body: clean(body.join(";")) };
  }
  return null;
}

function clean(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  return text.replace(/[\u0000-\u001f\u007f]/g, " ").trim();
}
