/**
 * Fuzzes the relay's frame reader (frame-reader.ts) with a seeded PRNG, so a failure names its seed and
 * replays: valid traffic in random chunkings (fragmented messages, empty fragments, control frames between
 * fragments, every length encoding) must come out byte for byte, routed by each message's first byte;
 * malformed frames must be refused with the right close code after everything valid before them went
 * out; random bytes must never throw.
 */
import { describe, expect, it } from "vitest";
import { prng } from "../../test/prng.ts";
import { FrameReader, type FrameSink, type MessageAction, Opcode } from "./frame-reader.ts";

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);

function bytes(r: Rand, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = int(r, 256);
  return b;
}

/** A frame as the wire has it; `length` overrides the real payload length in the header (malformed cases). */
function frame(
  opts: { fin?: boolean; opcode: number; payload: Buffer; mask?: Buffer | null; rsv?: number },
  encoding?: "7" | "16" | "64",
): Buffer {
  const { payload } = opts;
  const fin = opts.fin ?? true;
  const len = payload.length;
  const enc = encoding ?? (len < 126 ? "7" : len < 0x10000 ? "16" : "64");
  const ext = enc === "7" ? 0 : enc === "16" ? 2 : 8;
  const mask = opts.mask ?? null;
  const head = Buffer.alloc(2 + ext + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | ((opts.rsv ?? 0) << 4) | opts.opcode;
  head[1] = (mask ? 0x80 : 0) | (enc === "7" ? len : enc === "16" ? 126 : 127);
  if (enc === "16") head.writeUInt16BE(len, 2);
  if (enc === "64") {
    head.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
    head.writeUInt32BE(len >>> 0, 6);
  }
  let body = payload;
  if (mask) {
    mask.copy(head, 2 + ext);
    body = Buffer.from(payload);
    for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!;
  }
  return Buffer.concat([head, body]);
}

/** What a test sink saw. */
interface Seen {
  out: Buffer[];
  collected: Buffer[];
  controls: Array<{ opcode: number; payload: Buffer }>;
  ends: number[];
  errors: number[];
  boundaries: number;
  /** Payload bytes of forwarded frames, as `forwardedPayload` saw them pass. */
  payload: Buffer[];
}

/** Routes by command byte: 0x00–0x9f forward, 0xa0–0xcf drop, 0xd0–0xff collect; empty forwards. */
function route(command: number | undefined): MessageAction {
  if (command === undefined || command < 0xa0) return "forward";
  return command < 0xd0 ? "drop" : "collect";
}

function sink(r: Rand, seen: Seen): FrameSink {
  return {
    decide: (command) => ({ action: route(command), notify: true }),
    forward: (b) => seen.out.push(Buffer.from(b)),
    forwardedPayload: (chunk, start, end) => seen.payload.push(Buffer.from(chunk.subarray(start, end))),
    collected: (payload) => seen.collected.push(Buffer.from(payload)),
    messageEnd: (_c, length) => seen.ends.push(length),
    control: (opcode, payload) => seen.controls.push({ opcode, payload: Buffer.from(payload) }),
    // Sometimes something waits for a boundary: the reader must hand over what it forwarded first.
    waiting: () => r() < 0.3,
    boundary: () => {
      seen.boundaries++;
    },
    error: (code) => seen.errors.push(code),
  };
}

function newSeen(): Seen {
  return { out: [], collected: [], controls: [], ends: [], errors: [], boundaries: 0, payload: [] };
}

/**
 * Feeds `wire` in random chunk sizes (1 byte to 70 kB, small ones often), or, given its `frames`, half the
 * time one frame per chunk, as a socket usually reads a terminal's keystrokes and echoes (the reader's
 * one-step path for a whole message).
 */
function feed(reader: FrameReader, wire: Buffer, r: Rand, frames?: Buffer[]): void {
  if (frames && r() < 0.5) {
    for (const f of frames) reader.push(f);
    return;
  }
  let at = 0;
  while (at < wire.length) {
    const size = r() < 0.5 ? 1 + int(r, 16) : 1 + int(r, 70_000);
    reader.push(wire.subarray(at, at + size));
    at += size;
  }
}

const LENGTHS = [0, 1, 2, 3, 125, 126, 127, 65535, 65536, 70_000];

/** Random valid traffic from one leg, and what a routing sink must see from it. */
function traffic(r: Rand, masked: boolean) {
  const wire: Buffer[] = [];
  const forwarded: Buffer[] = [];
  const forwardedPayloads: Buffer[] = [];
  const collected: Buffer[] = [];
  const controls: Array<{ opcode: number; payload: Buffer }> = [];
  const ends: number[] = [];
  const mask = () => (masked ? bytes(r, 4) : null);
  const control = () => {
    const opcode = r() < 0.5 ? Opcode.PING : Opcode.PONG;
    const payload = bytes(r, int(r, 126));
    controls.push({ opcode, payload });
    wire.push(frame({ opcode, payload, mask: mask() }));
  };
  const messages = 1 + int(r, 12);
  for (let m = 0; m < messages; m++) {
    if (r() < 0.3) control();
    const total = r() < 0.6 ? LENGTHS[int(r, LENGTHS.length)]! : int(r, 3000);
    const payload = bytes(r, total);
    const opcode = r() < 0.5 ? Opcode.BINARY : Opcode.TEXT;
    // Split into 1–4 fragments, some of them empty (the command byte may come in a later fragment).
    const cuts = [0, total];
    for (let k = int(r, 4); k > 0; k--) cuts.push(int(r, total + 1));
    cuts.sort((a, b) => a - b);
    for (let i = 0; i + 1 < cuts.length; i++) {
      const last = i + 2 === cuts.length;
      wire.push(
        frame({
          fin: last,
          opcode: i === 0 ? opcode : Opcode.CONTINUATION,
          payload: payload.subarray(cuts[i], cuts[i + 1]),
          mask: mask(),
        }),
      );
      if (!last && r() < 0.3) control(); // between fragments
    }
    // What the sink must see for this message: rebuild from the wire just pushed (minus controls).
    const action = route(payload[0]);
    if (action === "collect") collected.push(payload);
    else ends.push(total);
    if (action === "forward") {
      forwarded.push(...messageFrames(wire, payload.length));
      forwardedPayloads.push(payload);
    }
  }
  return {
    frames: wire,
    wire: Buffer.concat(wire),
    forwarded: Buffer.concat(forwarded),
    forwardedPayload: Buffer.concat(forwardedPayloads),
    collected,
    controls,
    ends,
  };
}

/** The data frames of the message just pushed to `wire` (walking back over its frames). */
function messageFrames(wire: Buffer[], _total: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = wire.length - 1; i >= 0; i--) {
    const f = wire[i]!;
    const opcode = f[0]! & 0x0f;
    if (opcode >= 0x8) continue;
    out.unshift(f);
    if (opcode !== Opcode.CONTINUATION) break;
  }
  return out;
}

describe("frame reader (seeded fuzz)", () => {
  it("passes valid traffic through byte for byte in any chunking, and routes each message whole", () => {
    for (let seed = 1; seed <= 400; seed++) {
      const r = prng(seed);
      const masked = seed % 2 === 0;
      const t = traffic(r, masked);
      const seen = newSeen();
      // Payload scanning is for the box's leg, whose frames are not masked.
      const reader = new FrameReader(sink(r, seen), {
        masked,
        maxMessageBytes: 1 << 20,
        scanPayload: !masked,
      });
      feed(reader, t.wire, r, t.frames);
      const ctx = `seed ${seed}`;
      expect(seen.errors, ctx).toEqual([]);
      expect(Buffer.concat(seen.out).equals(t.forwarded), ctx).toBe(true);
      if (!masked) expect(Buffer.concat(seen.payload).equals(t.forwardedPayload), ctx).toBe(true);
      expect(seen.collected, ctx).toEqual(t.collected);
      expect(seen.controls, ctx).toEqual(t.controls);
      expect(seen.ends, ctx).toEqual(t.ends);
      expect(reader.midFrame || reader.midMessage, ctx).toBe(false);
      expect(reader.forwardedBytes, ctx).toBeGreaterThanOrEqual(0);
    }
  });

  const bad: Array<{ name: string; code: number; wire: (mask: Buffer | null) => Buffer }> = [
    {
      name: "64-bit length with its most significant bit set",
      code: 1002,
      wire: (mask) => {
        const f = frame({ opcode: Opcode.BINARY, payload: Buffer.alloc(70_000), mask }, "64");
        f[2] = 0x80;
        return f;
      },
    },
    {
      name: "16-bit length that fits in 7 bits",
      code: 1002,
      wire: (mask) => frame({ opcode: Opcode.BINARY, payload: Buffer.alloc(10), mask }, "16"),
    },
    {
      name: "64-bit length that fits in 16 bits",
      code: 1002,
      wire: (mask) => frame({ opcode: Opcode.BINARY, payload: Buffer.alloc(300), mask }, "64"),
    },
    {
      name: "a length past the limit",
      code: 1009,
      wire: (mask) => frame({ opcode: Opcode.BINARY, payload: Buffer.alloc(70_001), mask }),
    },
    {
      name: "a huge 64-bit length (header only)",
      code: 1009,
      wire: (mask) => {
        const f = frame({ opcode: Opcode.BINARY, payload: Buffer.alloc(70_000), mask }, "64");
        f.writeUInt32BE(0x001fffff, 2);
        return f.subarray(0, 10 + (mask ? 4 : 0));
      },
    },
    {
      name: "fragments summing past the limit",
      code: 1009,
      wire: (mask) =>
        Buffer.concat([
          frame({ fin: false, opcode: Opcode.BINARY, payload: Buffer.alloc(40_000), mask }),
          frame({ opcode: Opcode.CONTINUATION, payload: Buffer.alloc(40_000), mask }),
        ]),
    },
    {
      name: "a fragmented control frame",
      code: 1002,
      wire: (mask) => frame({ fin: false, opcode: Opcode.PING, payload: Buffer.alloc(3), mask }),
    },
    {
      name: "a control frame longer than 125 bytes",
      code: 1002,
      wire: (mask) => frame({ opcode: Opcode.PING, payload: Buffer.alloc(126), mask }),
    },
    {
      name: "a continuation with no message",
      code: 1002,
      wire: (mask) => frame({ opcode: Opcode.CONTINUATION, payload: Buffer.alloc(3), mask }),
    },
    {
      name: "a new message inside a fragmented one",
      code: 1002,
      wire: (mask) =>
        Buffer.concat([
          frame({ fin: false, opcode: Opcode.TEXT, payload: Buffer.from("0a"), mask }),
          frame({ opcode: Opcode.BINARY, payload: Buffer.from("0b"), mask }),
        ]),
    },
    {
      name: "reserved bits (RSV1: compression nobody negotiated)",
      code: 1002,
      wire: (mask) => frame({ opcode: Opcode.BINARY, payload: Buffer.from("0a"), mask, rsv: 4 }),
    },
    {
      name: "a reserved opcode",
      code: 1002,
      wire: (mask) => frame({ opcode: 0x3, payload: Buffer.from("0a"), mask }),
    },
    {
      name: "a reserved control opcode",
      code: 1002,
      wire: (mask) => frame({ opcode: 0xb, payload: Buffer.from("0a"), mask }),
    },
  ];

  for (const masked of [true, false]) {
    const leg = masked ? "client leg (masked)" : "box leg (unmasked)";
    for (const c of bad) {
      it(`${leg}: ${c.name} → ${c.code}, after everything valid before it`, () => {
        for (let seed = 1; seed <= 25; seed++) {
          const r = prng(seed * 7919);
          const t = traffic(r, masked);
          const tail = Buffer.from("0 never forwarded");
          const after = frame({ opcode: Opcode.BINARY, payload: tail, mask: masked ? bytes(r, 4) : null });
          const badFrames = c.wire(masked ? bytes(r, 4) : null);
          const wire = Buffer.concat([t.wire, badFrames, after]);
          const seen = newSeen();
          const reader = new FrameReader(sink(r, seen), { masked, maxMessageBytes: 70_000 });
          feed(reader, wire, r, [...t.frames, badFrames, after]);
          const ctx = `seed ${seed}`;
          expect(seen.errors, ctx).toEqual([c.code]);
          expect(reader.failed, ctx).toBe(true);
          // Everything valid before the bad frame went out; nothing of or after it did.
          const out = Buffer.concat(seen.out);
          expect(out.subarray(0, t.forwarded.length).equals(t.forwarded), ctx).toBe(true);
          expect(out.length <= t.forwarded.length + 41_000, ctx).toBe(true);
          expect(out.includes(tail), ctx).toBe(false);
        }
      });
    }

    it(`${leg}: a frame with the mask on the wrong leg → 1002`, () => {
      const r = prng(99);
      const seen = newSeen();
      const reader = new FrameReader(sink(r, seen), { masked, maxMessageBytes: 1 << 20 });
      reader.push(
        frame({ opcode: Opcode.BINARY, payload: Buffer.from("0x"), mask: masked ? null : bytes(r, 4) }),
      );
      expect(seen.errors).toEqual([1002]);
      expect(seen.out).toEqual([]);
    });
  }

  it("never throws on random bytes, and refuses them only with 1002 or 1009", () => {
    for (let seed = 1; seed <= 2000; seed++) {
      const r = prng(seed * 31);
      const masked = seed % 2 === 0;
      const seen = newSeen();
      const reader = new FrameReader(sink(r, seen), { masked, maxMessageBytes: 1 << 16 });
      // Sometimes valid traffic first, then garbage.
      const prefix = r() < 0.5 ? traffic(r, masked).wire : Buffer.alloc(0);
      feed(reader, Buffer.concat([prefix, bytes(r, 1 + int(r, 4000))]), r);
      for (const code of seen.errors) expect([1002, 1009], `seed ${seed}`).toContain(code);
      expect(seen.errors.length, `seed ${seed}`).toBeLessThanOrEqual(1);
    }
  });

  it("discard() drops the rest of the current frame and every later data frame, and still reads control frames", () => {
    const r = prng(5);
    const seen = newSeen();
    const reader = new FrameReader(sink(r, seen), { masked: false, maxMessageBytes: 1 << 20 });
    const first = frame({ opcode: Opcode.BINARY, payload: Buffer.alloc(1000, 0x30) });
    reader.push(first.subarray(0, 500));
    expect(reader.midFrame).toBe(true);
    expect(reader.frameRemaining).toBe(1000 - (500 - 4));
    reader.discard();
    expect(reader.midFrame).toBe(false);
    reader.push(
      Buffer.concat([
        first.subarray(500),
        frame({ opcode: Opcode.BINARY, payload: Buffer.from("0more") }),
        frame({ opcode: Opcode.CLOSE, payload: Buffer.of(0x03, 0xe8) }),
      ]),
    );
    expect(Buffer.concat(seen.out).equals(first.subarray(0, 500))).toBe(true);
    expect(seen.controls).toEqual([{ opcode: Opcode.CLOSE, payload: Buffer.of(0x03, 0xe8) }]);
  });
});
