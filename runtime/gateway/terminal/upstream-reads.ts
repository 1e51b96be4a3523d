/**
 * Reads the box's socket into a reused buffer (net's `onread`) instead of a new one per read.
 *
 * Each ordinary socket read allocates a 64 KiB ArrayBuffer. Garbage is cheap, but V8 counts those bytes
 * as external memory and starts a full mark-compact of the whole heap every ~64 MB of them. In a bare
 * pipe process that heap is a few MB; in the control plane it is tens of MB, so relaying 200 MB cost the
 * control plane's process about 2.5x the CPU of a bare pipe, most of it marking (`--trace-gc`, CPU
 * profiles and the bench's "pipe inside the control plane's process" row). Reading into a buffer the relay
 * keeps removes that allocation, so the collector has nothing to chase.
 *
 * Two buffers, so that an idle terminal holds none of its own:
 * - a small one shared by every upstream socket of the process. Reads are synchronous (one socket at a time
 *   reads into it, and its callback runs before the next read anywhere), and what arrives in it is copied
 *   out before the callback returns, so nothing ever refers to it later. Small reads (keystroke echo,
 *   control frames) cost a small copy, as the default path costs a small allocation.
 * - a 64 KiB one of the socket's own once a read fills the shared one (bulk output). The relay forwards
 *   views of it without copying; the next read reuses it when the write towards the browser completed
 *   synchronously (nothing refers to it any more), and gets a fresh one when the write is still queued.
 *   A short read goes back to the shared buffer and lets the socket's own go.
 *
 * Before the relay takes the socket over (the `ws` handshake), and while bytes `ws` handed back are still
 * buffered in the socket, reads are pushed into the socket's stream as copies: its 'data' listeners get
 * everything in order, as without `onread`.
 */
import type { OnReadOpts, Socket } from "node:net";

const SHARED_SIZE = 4 * 1024;
const OWN_SIZE = 64 * 1024;
const shared = Buffer.allocUnsafeSlow(SHARED_SIZE);

export class UpstreamReads {
  #own: Buffer | null = null;
  #next: Buffer = shared;
  #handler: ((chunk: Buffer) => void) | null = null;
  #retained: () => boolean = () => true;

  /** For `net.connect({ onread })` (DialOptions.onread). */
  readonly onread: OnReadOpts;

  constructor() {
    const reads = this;
    this.onread = {
      buffer: () => reads.#next,
      // net calls it as a method of the socket: `this` is the socket that read.
      callback(this: Socket, n: number, buf: Uint8Array): boolean {
        return reads.#read(this, n, buf as Buffer);
      },
    };
  }

  /**
   * From now on, reads go to `handler` as views of the buffer (after any bytes still buffered in the
   * socket's stream, which its 'data' listener gets). `retained` says whether the last view handed over may
   * still be referenced (a write towards the browser is queued).
   */
  attach(handler: (chunk: Buffer) => void, retained: () => boolean): void {
    this.#handler = handler;
    this.#retained = retained;
  }

  #read(socket: Socket, n: number, buf: Buffer): boolean {
    const handler = this.#handler;
    let keep = true;
    if (buf === shared) {
      const copy = Buffer.from(buf.subarray(0, n));
      if (handler && socket.readableLength === 0) handler(copy);
      else keep = socket.push(copy);
      // A full shared buffer: bulk output is coming, read it into a buffer of our own.
      this.#next = n === SHARED_SIZE ? this.#ownBuffer(false) : shared;
      return keep;
    }
    const view = buf.subarray(0, n);
    if (handler && socket.readableLength === 0) handler(view);
    else keep = socket.push(Buffer.from(view));
    // A short read: output slowed down, give the socket's own buffer back.
    if (n < SHARED_SIZE) {
      this.#own = null;
      this.#next = shared;
    } else this.#next = this.#ownBuffer(handler !== null && this.#retained());
    return keep;
  }

  #ownBuffer(retained: boolean): Buffer {
    if (!this.#own || retained) this.#own = Buffer.allocUnsafeSlow(OWN_SIZE);
    return this.#own;
  }
}
