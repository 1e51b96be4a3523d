/**
 * The few RFC 6455 frames the terminal relay writes itself (everything else it forwards as it arrived,
 * frame-reader.ts): the rewritten init and resizes, PAUSE/RESUME, the window title, pings and pongs, and
 * close frames. Frames towards the box are masked, as a client's must be; frames towards the browser not.
 */
import { isUtf8 } from "node:buffer";
import { randomFillSync } from "node:crypto";
import { isSendableCloseCode } from "./close-codes.ts";
import { Opcode } from "./frame-reader.ts";

/** Mask keys come from a pool refilled in one call, as `ws` does: one syscall per 2,048 frames. */
const maskPool = Buffer.alloc(8192);
let maskOffset = maskPool.length;

function nextMask(): Buffer {
  if (maskOffset === maskPool.length) {
    randomFillSync(maskPool);
    maskOffset = 0;
  }
  const mask = maskPool.subarray(maskOffset, maskOffset + 4);
  maskOffset += 4;
  return mask;
}

/** One final frame carrying `payload`, masked if `masked`. */
export function encodeFrame(opcode: number, payload: Buffer, masked: boolean): Buffer {
  const len = payload.length;
  const ext = len < 126 ? 0 : len < 0x10000 ? 2 : 8;
  const headerLength = 2 + ext + (masked ? 4 : 0);
  const frame = Buffer.allocUnsafe(headerLength + len);
  frame[0] = 0x80 | opcode;
  const lenField = ext === 0 ? len : ext === 2 ? 126 : 127;
  frame[1] = (masked ? 0x80 : 0) | lenField;
  if (ext === 2) frame.writeUInt16BE(len, 2);
  else if (ext === 8) {
    frame.writeUInt32BE(Math.floor(len / 0x100000000), 2);
    frame.writeUInt32BE(len >>> 0, 6);
  }
  if (!masked) {
    payload.copy(frame, headerLength);
    return frame;
  }
  const mask = nextMask();
  mask.copy(frame, 2 + ext);
  for (let i = 0; i < len; i++) frame[headerLength + i] = payload[i]! ^ mask[i & 3]!;
  return frame;
}

export function encodeClose(code: number | undefined, reason: string, masked: boolean): Buffer {
  if (code === undefined) return encodeFrame(Opcode.CLOSE, Buffer.alloc(0), masked);
  const text = Buffer.from(reason, "utf8").subarray(0, 123);
  const payload = Buffer.allocUnsafe(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  return encodeFrame(Opcode.CLOSE, payload, masked);
}

/**
 * A received close frame's code (1005 when it carries none), or the protocol error it is: a one-byte
 * body or a code a peer may not send is 1002, a reason that is not UTF-8 is 1007 (what `ws` answered).
 */
export function parseClose(payload: Buffer): { code: number } | { error: number; reason: string } {
  if (payload.length === 0) return { code: 1005 };
  if (payload.length === 1) return { error: 1002, reason: "invalid close frame" };
  const code = payload.readUInt16BE(0);
  if (!isSendableCloseCode(code)) return { error: 1002, reason: `invalid close code ${code}` };
  if (!isUtf8(payload.subarray(2))) return { error: 1007, reason: "invalid close reason" };
  return { code };
}
