/**
 * An incremental RFC 6455 frame reader for one leg of the terminal relay, which forwards frames as the
 * wire bytes they arrived as instead of re-framing them. It parses headers only (FIN, opcode, length, mask
 * key), and of a data message's payload only its first byte, ttyd's command (unmasked with the key), which
 * decides what happens to the whole message (`decide`):
 *   - "forward": every byte of every frame of the message goes to `sink.forward`, unchanged and in order.
 *     Consecutive forwarded bytes of one chunk leave as one slice of that chunk (no copy).
 *   - "drop": the message's frames are skipped.
 *   - "collect": the message is assembled (unmasked) and handed to `sink.collected` with its raw frames,
 *     for the few messages the relay rewrites (the init, a resize, a window title).
 * Control frames are never forwarded: each is assembled (≤ 125 bytes) and handed to `sink.control`.
 *
 * It enforces what `ws`'s Receiver enforced on the relay's behalf before, with the same close codes:
 * 1002 for a protocol error (reserved bits or opcodes, a mask on the wrong leg, a fragmented or oversized
 * control frame, a continuation with no message, a new message inside a fragmented one, a length with its
 * most significant bit set or not minimally encoded) and 1009 for a message longer than `maxMessageBytes`
 * (summed over its fragments). After an error the reader ignores everything.
 *
 * Compression cannot pass through (a deflated frame's bytes are not the message), so neither leg
 * negotiates permessage-deflate, and a frame with RSV1 set is a protocol error.
 */

export type MessageAction = "forward" | "drop" | "collect";

/** Close codes the reader reports (RFC 6455 7.4.1). */
export const PROTOCOL_ERROR = 1002;
export const MESSAGE_TOO_BIG = 1009;

export const Opcode = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;

export interface FrameSink {
  /**
   * What to do with a data message, from its first payload byte (undefined for an empty message). `notify`
   * asks for `messageEnd` when a forwarded or dropped message is complete.
   */
  decide(command: number | undefined, binary: boolean): { action: MessageAction; notify: boolean };
  /** Wire bytes of forwarded frames, to write as they are. */
  forward(bytes: Buffer): void;
  /**
   * Payload bytes of a forwarded frame, `chunk[start..end)`, as they pass (only when `scanPayload` is set;
   * the relay looks for the attach-ended marker in box output). Only meaningful for unmasked frames.
   */
  forwardedPayload?(chunk: Buffer, start: number, end: number): void;
  /** A complete collected message: its payload (unmasked) and its frames' wire bytes. */
  collected(payload: Buffer, raw: Buffer[], binary: boolean): void;
  /** A forwarded or dropped message with `notify` is complete. */
  messageEnd(command: number | undefined, length: number): void;
  /** A complete control frame, unmasked. */
  control(opcode: number, payload: Buffer): void;
  /** True when frames wait to be sent between forwarded frames (`boundary` is then called at each one). */
  waiting(): boolean;
  /** The forwarded output is at a frame boundary (and, with `messageEnd`, a message boundary). */
  boundary(messageEnd: boolean): void;
  error(code: number, reason: string): void;
}

export interface FrameReaderOptions {
  /** Frames from a client must be masked and frames from a server must not be (RFC 6455 5.1). */
  masked: boolean;
  maxMessageBytes: number;
  /** Call `sink.forwardedPayload` for payload bytes of forwarded frames. */
  scanPayload?: boolean;
}

/** What happens to the frame being read. "hold": a data frame whose message is not decided yet. */
type Disposition = "forward" | "drop" | "collect" | "control" | "hold";

const MAX_HEADER = 14;
/** Where headers are assembled (see FrameReader.#partialHead). */
const HEAD = Buffer.alloc(MAX_HEADER);

/** A frame header's length, from its second byte (the mask bit and the 7-bit length). */
function headerLength(b1: number): number {
  const len7 = b1 & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
}

// Big-endian reads by hand: Buffer's readUInt*BE check their arguments, a cost that shows on every frame.
function uint16(b: Buffer, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

function uint32(b: Buffer, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** Byte `i & 3` of a big-endian mask key. */
function maskByte(mask: number, i: number): number {
  return (mask >>> (24 - 8 * (i & 3))) & 0xff;
}

export class FrameReader {
  /** Payload bytes of forwarded data frames so far (the relay's byte counters). */
  forwardedBytes = 0;

  readonly #sink: FrameSink;
  readonly #masked: boolean;
  readonly #max: number;
  readonly #scan: boolean;

  // The header being read. A header wholly inside a chunk is parsed where it is; one cut by a chunk's end
  // is assembled in one buffer shared by every reader (reading is synchronous), and keeps its first bytes
  // in a buffer of its own until the rest comes. An idle terminal has two readers, so this saves their
  // memory, not time.
  #partialHead: Buffer | null = null;
  #headLen = 0;
  /** Where the current header started in the current chunk, or -1 if it started in an earlier one. */
  #headStart = -1;

  // The frame being read (its header is complete).
  #inFrame = false;
  #opcode = 0;
  #fin = false;
  #remaining = 0;
  /** The frame's mask key, big-endian. */
  #mask = 0;
  #hasMask = false;
  /** Payload bytes of this frame consumed so far: the mask key's offset. */
  #payloadOffset = 0;
  #disposition: Disposition = "drop";

  // The data message being read.
  #inMessage = false;
  #messageBinary = false;
  #messageLength = 0;
  #decided = false;
  #action: MessageAction = "drop";
  #notify = false;
  #command: number | undefined = undefined;
  /** Wire bytes of an undecided message (its headers so far), or of a collected message. */
  #raw: Buffer[] = [];
  /** Unmasked payload of a collected message. */
  #collect: Buffer[] = [];
  /** Payload of the control frame being read. */
  #control: Buffer[] = [];

  // The chunk being read and the start of the forwarded run in it not yet handed to the sink.
  #chunk: Buffer | null = null;
  #pos = 0;
  #spanStart = -1;

  #failed = false;
  /** Set by `discard()`: every later data byte is dropped; control frames are still read. */
  #discarding = false;

  constructor(sink: FrameSink, options: FrameReaderOptions) {
    this.#sink = sink;
    this.#masked = options.masked;
    this.#max = options.maxMessageBytes;
    this.#scan = options.scanPayload ?? false;
  }

  /** True when forwarded output stopped inside a frame: nothing else may be written to that socket now. */
  get midFrame(): boolean {
    return this.#inFrame && this.#disposition === "forward";
  }

  /** True when forwarded output stopped inside a fragmented message: only control frames may go between. */
  get midMessage(): boolean {
    return this.#inMessage && this.#decided && this.#action === "forward";
  }

  /** Payload bytes still to come of the frame being forwarded (see `midFrame`). */
  get frameRemaining(): number {
    return this.midFrame ? this.#remaining : 0;
  }

  get failed(): boolean {
    return this.#failed;
  }

  /**
   * From now on, drop every data byte, the rest of the current frame included (the relay is closing this
   * leg's output; it pads an unfinished forwarded frame itself). Control frames are still read.
   */
  discard(): void {
    this.flush();
    this.#spanStart = -1;
    this.#discarding = true;
    if (this.#inFrame && this.#disposition !== "control") this.#disposition = "drop";
    if (this.#inMessage) {
      this.#decided = true;
      this.#action = "drop";
      this.#notify = false;
      this.#raw = [];
      this.#collect = [];
    }
  }

  /** Hands the forwarded bytes read so far in the current chunk to the sink (before anything is inserted). */
  flush(): void {
    if (this.#spanStart >= 0 && this.#chunk && this.#pos > this.#spanStart) {
      this.#sink.forward(this.#chunk.subarray(this.#spanStart, this.#pos));
    }
    this.#spanStart = this.#spanStart >= 0 ? this.#pos : -1;
  }

  #endSpan(at: number): void {
    const chunk = this.#chunk;
    const start = this.#spanStart;
    if (start >= 0 && chunk && at > start) {
      // The whole chunk (one keystroke, one echo) leaves as it is, without a view made of it.
      this.#sink.forward(start === 0 && at === chunk.length ? chunk : chunk.subarray(start, at));
    }
    this.#spanStart = -1;
  }

  push(chunk: Buffer): void {
    if (this.#failed) return;
    if (this.#wholeMessage(chunk)) return;
    this.#chunk = chunk;
    this.#pos = 0;
    this.#spanStart = -1;
    this.#headStart = -1;
    const n = chunk.length;
    while (this.#pos < n && !this.#failed) {
      if (!this.#inFrame) {
        if (!this.#readHeader(chunk)) break;
        if (this.#failed) break;
        if (this.#remaining === 0) this.#frameEnd();
        continue;
      }
      const start = this.#pos;
      const take = Math.min(this.#remaining, n - start);
      if (this.#disposition === "hold") this.#decideNow(chunk[start]!, start);
      const disposition = this.#disposition;
      if (disposition === "collect") {
        this.#raw.push(Buffer.from(chunk.subarray(start, start + take)));
        this.#collect.push(this.#unmasked(chunk, start, take));
      } else if (disposition === "control") {
        this.#control.push(this.#unmasked(chunk, start, take));
      }
      // Consumed before the sink hears of it: the sink may end the relay, which reads `frameRemaining`.
      this.#pos = start + take;
      this.#remaining -= take;
      this.#payloadOffset += take;
      if (disposition === "forward") {
        // A frame continued from an earlier chunk: the run starts at this chunk's beginning.
        if (this.#spanStart < 0) this.#spanStart = start;
        this.forwardedBytes += take;
        if (this.#scan) this.#sink.forwardedPayload?.(chunk, start, start + take);
      }
      if (this.#remaining === 0 && this.#inFrame) this.#frameEnd();
    }
    // A header cut off by the chunk's end is not forwarded yet: its frame may not be.
    if (!this.#failed) this.#endSpan(this.#headLen > 0 && this.#headStart >= 0 ? this.#headStart : this.#pos);
    this.#chunk = null;
    this.#spanStart = -1;
  }

  /**
   * The common case on both legs, taken in one step: the chunk is exactly one small message in one frame
   * (a keystroke, an echo), read at a message boundary. The general path below reads it just the same,
   * through a dozen calls and state changes; on a terminal that is otherwise idle, each of those is a
   * cache miss, and together they made a relayed keystroke measurably slower than a bare pipe. False
   * when the chunk is anything else (the general path then reads it).
   *
   * The sink hears what it would from the general path, in this order: decide; then forward (the whole
   * chunk) and forwardedPayload, messageEnd if asked, boundary if waiting; or messageEnd for a dropped
   * message if asked; or collected.
   */
  #wholeMessage(chunk: Buffer): boolean {
    if (this.#inFrame || this.#inMessage || this.#headLen !== 0 || this.#discarding) return false;
    const n = chunk.length;
    if (n < 3) return false;
    const b0 = chunk[0]!;
    // FIN, no reserved bits, a text or binary frame.
    if (b0 !== 0x80 + Opcode.BINARY && b0 !== 0x80 + Opcode.TEXT) return false;
    const b1 = chunk[1]!;
    const length = b1 & 0x7f;
    if (((b1 & 0x80) !== 0) !== this.#masked || length === 0 || length >= 126 || length > this.#max)
      return false;
    const at = this.#masked ? 6 : 2;
    if (at + length !== n) return false;
    const mask = this.#masked ? uint32(chunk, 2) : 0;
    const binary = b0 === 0x80 + Opcode.BINARY;
    const command = this.#masked ? chunk[at]! ^ (mask >>> 24) : chunk[at]!;
    const { action, notify } = this.#sink.decide(command, binary);
    if (action === "forward") {
      this.forwardedBytes += length;
      this.#sink.forward(chunk);
      if (this.#scan) this.#sink.forwardedPayload?.(chunk, at, n);
      if (notify && !this.#discarding) this.#sink.messageEnd(command, length);
      if (this.#sink.waiting()) this.#sink.boundary(true);
    } else if (action === "drop") {
      if (notify && !this.#discarding) this.#sink.messageEnd(command, length);
    } else if (!this.#discarding) {
      const payload = Buffer.from(chunk.subarray(at));
      if (this.#masked) for (let i = 0; i < length; i++) payload[i]! ^= maskByte(mask, i);
      this.#sink.collected(payload, [Buffer.from(chunk)], binary);
    }
    return true;
  }

  /** A copy of `chunk[start, start+len)`, unmasked with the current frame's key at its payload offset. */
  #unmasked(chunk: Buffer, start: number, len: number): Buffer {
    const out = Buffer.from(chunk.subarray(start, start + len));
    if (this.#hasMask) {
      const mask = this.#mask;
      const offset = this.#payloadOffset;
      for (let i = 0; i < len; i++) out[i]! ^= maskByte(mask, offset + i);
    }
    return out;
  }

  /** Reads header bytes; false when the chunk ended first. Validates and routes the frame once complete. */
  #readHeader(chunk: Buffer): boolean {
    const pos = this.#pos;
    if (this.#headLen === 0) {
      this.#headStart = pos;
      // Usually the whole header is in this chunk: read it where it is.
      if (chunk.length - pos >= 2) {
        const length = headerLength(chunk[pos + 1]!);
        if (chunk.length - pos >= length) {
          this.#pos = pos + length;
          this.#headerComplete(chunk, pos, length);
          return true;
        }
      }
    }
    // A header cut by a chunk's end.
    const head = HEAD;
    if (this.#headLen > 0) this.#partialHead!.copy(head, 0, 0, this.#headLen);
    let want = this.#headLen < 2 ? 2 : headerLength(head[1]!);
    while (this.#headLen < want) {
      if (this.#pos >= chunk.length) {
        this.#partialHead ??= Buffer.alloc(MAX_HEADER);
        head.copy(this.#partialHead, 0, 0, this.#headLen);
        return false;
      }
      const copy = Math.min(want - this.#headLen, chunk.length - this.#pos);
      chunk.copy(head, this.#headLen, this.#pos, this.#pos + copy);
      this.#headLen += copy;
      this.#pos += copy;
      want = this.#headLen < 2 ? 2 : headerLength(head[1]!);
    }
    this.#headLen = 0;
    this.#headerComplete(head, 0, want);
    return true;
  }

  #fail(code: number, reason: string): void {
    // Bytes forwarded before the bad header were good: they go out first.
    this.#endSpan(this.#headStart >= 0 ? this.#headStart : this.#pos);
    this.#failed = true;
    this.#sink.error(code, reason);
  }

  /** The header is `head[at, at + headerLength)` (in the chunk, or assembled in HEAD). */
  #headerComplete(head: Buffer, at: number, headerLength: number): void {
    const b0 = head[at]!;
    const b1 = head[at + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    if (b0 & 0x70) {
      this.#fail(PROTOCOL_ERROR, "reserved bits set");
      return;
    }
    if (masked !== this.#masked) {
      this.#fail(PROTOCOL_ERROR, this.#masked ? "frame not masked" : "frame masked");
      return;
    }
    let length = b1 & 0x7f;
    if (length === 126) {
      length = uint16(head, at + 2);
      if (length < 126) {
        this.#fail(PROTOCOL_ERROR, "length not minimally encoded");
        return;
      }
    } else if (length === 127) {
      const high = uint32(head, at + 2);
      const low = uint32(head, at + 6);
      if (high & 0x80000000) {
        this.#fail(PROTOCOL_ERROR, "length has its most significant bit set");
        return;
      }
      if (high === 0 && low < 0x10000) {
        this.#fail(PROTOCOL_ERROR, "length not minimally encoded");
        return;
      }
      // Anything past 2^32 is far past any limit; the exact value does not matter.
      length = high > 0 ? Number.MAX_SAFE_INTEGER : low;
    }
    if (masked) this.#mask = uint32(head, at + headerLength - 4);

    const control = opcode >= 0x8;
    if (control) {
      if (opcode !== Opcode.CLOSE && opcode !== Opcode.PING && opcode !== Opcode.PONG) {
        this.#fail(PROTOCOL_ERROR, `reserved opcode ${opcode}`);
        return;
      }
      if (!fin) {
        this.#fail(PROTOCOL_ERROR, "fragmented control frame");
        return;
      }
      if (length > 125) {
        this.#fail(PROTOCOL_ERROR, "control frame longer than 125 bytes");
        return;
      }
    } else if (opcode === Opcode.CONTINUATION) {
      if (!this.#inMessage) {
        this.#fail(PROTOCOL_ERROR, "continuation frame without a message");
        return;
      }
    } else if (opcode === Opcode.TEXT || opcode === Opcode.BINARY) {
      if (this.#inMessage) {
        this.#fail(PROTOCOL_ERROR, "new message inside a fragmented one");
        return;
      }
    } else {
      this.#fail(PROTOCOL_ERROR, `reserved opcode ${opcode}`);
      return;
    }
    if (!control) {
      if (length > this.#max - this.#messageLength) {
        this.#fail(MESSAGE_TOO_BIG, "message too big");
        return;
      }
    }

    this.#inFrame = true;
    this.#opcode = opcode;
    this.#fin = fin;
    this.#remaining = length;
    this.#hasMask = masked;
    this.#payloadOffset = 0;

    let disposition: Disposition;
    if (control) {
      disposition = "control";
      this.#control = [];
    } else {
      if (opcode !== Opcode.CONTINUATION) {
        this.#inMessage = true;
        this.#messageBinary = opcode === Opcode.BINARY;
        this.#messageLength = 0;
        this.#decided = this.#discarding;
        this.#action = "drop";
        this.#notify = false;
        this.#command = undefined;
        this.#raw = [];
        this.#collect = [];
      }
      this.#messageLength += length;
      if (this.#decided) disposition = this.#action;
      else if (length > 0 && this.#pos < (this.#chunk?.length ?? 0)) {
        // The common case: the command byte is right here, decide without holding anything.
        this.#decide(this.#firstPayloadByte(this.#chunk![this.#pos]!));
        disposition = this.#action;
        // Empty fragments before this one were held: they go first, or nowhere.
        if (this.#raw.length > 0 && disposition !== "collect") {
          const held = this.#raw;
          this.#raw = [];
          if (disposition === "forward") {
            this.#endSpan(this.#headStart >= 0 ? this.#headStart : this.#pos);
            this.#sink.forward(Buffer.concat(held));
          }
        }
      } else disposition = "hold";
    }
    this.#disposition = disposition;

    if (disposition === "forward") {
      if (this.#spanStart < 0) {
        if (this.#headStart >= 0) this.#spanStart = this.#headStart;
        else {
          // The header straddled chunks: its first bytes are gone from the chunk, send the copy.
          this.#sink.forward(Buffer.from(head.subarray(at, at + headerLength)));
          this.#spanStart = this.#pos;
        }
      }
      return;
    }
    // Not forwarded: the forwarded run (if any) ends where this header began.
    this.#endSpan(this.#headStart >= 0 ? this.#headStart : this.#pos);
    if (disposition === "hold" || disposition === "collect")
      this.#raw.push(Buffer.from(head.subarray(at, at + headerLength)));
  }

  #firstPayloadByte(wire: number): number {
    return this.#hasMask ? wire ^ maskByte(this.#mask, this.#payloadOffset) : wire;
  }

  #decide(command: number | undefined): void {
    const d = this.#sink.decide(command, this.#messageBinary);
    this.#decided = true;
    this.#action = d.action;
    this.#notify = d.notify;
    this.#command = command;
  }

  /** The held message's command byte arrived at `chunk[at]`: decide, and release or drop what was held. */
  #decideNow(wire: number, at: number): void {
    this.#decide(this.#firstPayloadByte(wire));
    this.#disposition = this.#action;
    if (this.#action === "forward") {
      const held = this.#raw;
      this.#raw = [];
      this.#sink.forward(held.length === 1 ? held[0]! : Buffer.concat(held));
      this.#spanStart = at;
    } else if (this.#action === "drop") this.#raw = [];
  }

  #frameEnd(): void {
    this.#inFrame = false;
    const disposition = this.#disposition;
    if (disposition === "control") {
      const payload = this.#control.length === 1 ? this.#control[0]! : Buffer.concat(this.#control);
      this.#control = [];
      this.#sink.control(this.#opcode, payload);
      return;
    }
    const messageEnd = this.#fin;
    if (messageEnd) {
      this.#inMessage = false;
      // An empty message (or one of empty fragments) is decided only now.
      if (!this.#decided) {
        this.#decide(undefined);
        if (this.#action === "forward") {
          this.#endSpan(this.#pos);
          const held = this.#raw;
          this.#raw = [];
          this.#sink.forward(held.length === 1 ? held[0]! : Buffer.concat(held));
        }
      }
      if (this.#action === "collect" && !this.#discarding) {
        const payload = this.#collect.length === 1 ? this.#collect[0]! : Buffer.concat(this.#collect);
        const raw = this.#raw;
        this.#raw = [];
        this.#collect = [];
        this.#sink.collected(payload, raw, this.#messageBinary);
      } else if (this.#notify && !this.#discarding) {
        this.#endSpan(this.#pos);
        this.#sink.messageEnd(this.#command, this.#messageLength);
      }
      this.#raw = [];
      this.#messageLength = 0;
    }
    if (disposition === "forward" && this.#sink.waiting()) {
      this.flush();
      this.#sink.boundary(messageEnd);
    }
  }
}
