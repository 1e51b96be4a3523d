/**
 * Reads a box's socket into a reused buffer (net's `onread`) instead of a new one per read: the terminal
 * relay's sockets to ttyd and the preview relay's to dev servers.
 *
 * Each ordinary socket read allocates a 64 KiB ArrayBuffer. Garbage is cheap, but V8 counts those bytes
 * as external memory and starts a full mark-compact of the whole heap every ~64 MB of them. In a bare
 * pipe process that heap is a few MB; in the control plane it is tens of MB, so relaying 200 MB cost the
 * control plane's process about 2.5x the CPU of a bare pipe, most of it marking (`--trace-gc`, CPU
 * profiles and the bench's "pipe inside the control plane's process" row). A preview of 1 MB responses
 * did the same: the byte relay inside the control plane took about twice the CPU per response of the same
 * relay in a process of its own, the difference being the collector (its helper threads alone about 0.6 ms
 * per response). Reading into a buffer the relay keeps removes that allocation, so the collector has
 * nothing to chase.
 *
 * Two buffers, so that an idle terminal holds none of its own:
 * - a small one shared by every upstream socket of the process. Reads are synchronous (one socket at a time
 *   reads into it, and its callback runs before the next read anywhere), and what arrives in it is copied
 *   out before the callback returns, so nothing ever refers to it later. Small reads (keystroke echo,
 *   control frames, a dev server's small responses) cost a small copy, as the default path costs a small
 *   allocation.
 * - a 64 KiB one of the socket's own once a read fills the shared one (bulk output, a large response
 *   body). The relay forwards views of it without copying, and the next read reuses it, as long as the
 *   write towards the browser completes at once (nothing refers to it any more). A short read that comes
 *   after a pause (an echo, a status line, the pong of the relay's ping: the output had stopped) goes back
 *   to the shared buffer and lets the socket's own go, so a terminal holds one for at most a ping interval
 *   after its output ends (and a pooled dev-server connection until its next small response after a
 *   pause, or its idle close). Not any short read: tmux redraws a few KiB at a time, and a fresh buffer
 *   after each of them put the external memory back.
 *
 * While writes towards the browser are queued (a browser slower than the box), whatever the relay is
 * handed now stays referenced until the queue drains. A read of up to half the socket's buffer is then
 * handed over as a copy of exactly its bytes, and the buffer is read into again; only a larger read is
 * handed over as it is, the buffer going with it (as a view does whose write queued after all). A fresh
 * 64 KiB buffer for every read of a few KiB (`cat` through tmux reads the box a screenful at a time) had
 * put the external memory, and the full collections, back.
 *
 * Before the relay takes the socket over (the `ws` handshake), and while bytes `ws` handed back are still
 * buffered in the socket, reads are pushed into the socket's stream as copies: its 'data' listeners get
 * everything in order, as without `onread`.
 */
import type { OnReadOpts, Socket } from "node:net";

const SHARED_SIZE = 4 * 1024;
const OWN_SIZE = 64 * 1024;
/** A read this long after the one before it follows a pause in the output. */
const PAUSE_MS = 100;
const shared = Buffer.allocUnsafeSlow(SHARED_SIZE);

/** Where a taken-over socket's reads go (`attachUpstreamReads`). */
interface Reader {
  handler: (chunk: Buffer) => void;
  /** Whose writes may still refer to the last view handed over: any bytes queued mean yes. */
  holder: { readonly bufferedAmount: number };
  own: Buffer | null;
  /** When the socket last read, on `clock`. */
  lastReadAt: number;
  clock: () => number;
}

// One `onread` for every upstream socket, and no state per socket until the relay takes it over: an idle
// terminal costs no more memory than without it. net calls `callback` (as a method of the socket that
// read) and then `buffer` for that socket's next read, synchronously, so `next` carries the answer from one
// to the other; anything else asking (a new socket's first read) gets the shared buffer.
const readers = new WeakMap<Socket, Reader>();
let next: Buffer = shared;

/** For `net.connect({ onread })` (DialOptions.onread): the relay's sockets to boxes. */
export const UPSTREAM_ONREAD: OnReadOpts = {
  buffer: () => {
    const buf = next;
    next = shared;
    return buf;
  },
  callback(this: Socket, n: number, buf: Uint8Array): boolean {
    return read(this, n, buf as Buffer);
  },
};

/**
 * From now on, reads from `socket` go to `handler` (after any bytes still buffered in the socket's stream,
 * which its 'data' listener gets), as views of the buffer they were read into or as copies. While `holder`
 * has bytes queued, whatever was handed over may still be referenced, and no later read overwrites it.
 * `clock` (milliseconds) tells pauses in the output.
 */
export function attachUpstreamReads(
  socket: Socket,
  handler: (chunk: Buffer) => void,
  holder: { readonly bufferedAmount: number },
  clock: () => number = () => performance.now(),
): void {
  readers.set(socket, { handler, holder, own: null, lastReadAt: clock(), clock });
}

/** Whether `socket` holds a read buffer of its own now (what an idle terminal should not). */
export function holdsOwnReadBuffer(socket: Socket): boolean {
  return readers.get(socket)?.own != null;
}

function read(socket: Socket, n: number, buf: Buffer): boolean {
  const reader = readers.get(socket);
  const direct = reader !== undefined && socket.readableLength === 0;
  let resumed = false;
  if (reader) {
    const at = reader.clock();
    resumed = at - reader.lastReadAt >= PAUSE_MS;
    reader.lastReadAt = at;
  }
  let keep = true;
  if (buf === shared) {
    const copy = Buffer.from(buf.subarray(0, n));
    if (direct) reader.handler(copy);
    else keep = socket.push(copy);
    // A full shared buffer once taken over: bulk output is coming, read it into a buffer of its own.
    if (reader && n === SHARED_SIZE) next = reader.own ??= Buffer.allocUnsafeSlow(OWN_SIZE);
    return keep;
  }
  // Only a taken-over socket reads into a buffer of its own.
  const own = reader!;
  const view = buf.subarray(0, n);
  if (!direct) keep = socket.push(Buffer.from(view));
  else if (own.holder.bufferedAmount > 0 && n <= OWN_SIZE / 2) own.handler(Buffer.from(view));
  else {
    own.handler(view);
    // The write that took the view queued it: the buffer is the queue's now.
    if (own.holder.bufferedAmount > 0) own.own = null;
  }
  // A short read after a pause: the output had stopped, give the socket's own buffer back.
  if (n < SHARED_SIZE && resumed) own.own = null;
  else next = own.own ??= Buffer.allocUnsafeSlow(OWN_SIZE);
  return keep;
}
