/**
 * Reads the byte relay's client connections into one shared buffer, each read copied out at its size,
 * instead of node:net's default for an accepted socket: a new 64 KiB allocation per read (shrunk to the
 * bytes read) handed through the socket's Readable stream, a 'data' event and a tick per read. A small
 * preview request is one read, so that default was a fixed cost on every request: with this, the bare
 * relay ran 10,000 small requests in about 6 % fewer instructions (callgrind; README, "Less per request").
 *
 * net offers this as `onread` for the sockets a process dials (the relay's own connections to dev servers
 * use it: boxnet/upstream-reads.ts), not for the ones a server accepts. `takeClientReads` switches an
 * accepted socket over the way net's own constructor does for `onread`: the socket's three onread fields
 * (found by name on a socket made with `onread`) and its handle's `useUserBuffer`. These are Node's
 * internals, so nothing depends on them being there: on a Node without them `takeClientReads` says no and
 * the relay reads 'data' events as before, and a test checks that the Node this project pins says yes.
 *
 * A socket whose reads were taken still works as a stream for whoever gets it next: once the relay lets
 * go (`releaseClientReads`, when it hands the connection to node:http), every read is pushed into the
 * socket's stream as a copy, in order after anything already there. node:http's parser reads the socket
 * itself from then on, and an upgraded connection's reads come back through here into the stream.
 */
import { Socket } from "node:net";

/** One read's buffer for every client socket: reads are synchronous, and each is copied out at once. */
const SHARED = Buffer.allocUnsafeSlow(16 * 1024);

interface OnReadFields {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

let fields: OnReadFields | null | undefined;

/** The socket fields net sets for `onread`, or null when this Node has no such fields. */
function onReadFields(): OnReadFields | null {
  if (fields !== undefined) return fields;
  const callback = () => true;
  const probe = new Socket({ onread: { buffer: SHARED, callback } });
  const own = new Map(Object.getOwnPropertySymbols(probe).map((s) => [s.description, s]));
  const value = (s: symbol | undefined) => (s ? (probe as unknown as Record<symbol, unknown>)[s] : undefined);
  const buffer = own.get("kBuffer");
  const cb = own.get("kBufferCb");
  const generator = own.get("kBufferGen");
  // Each field must hold what `onread` was given, or these are not the fields this module knows.
  fields =
    buffer &&
    cb &&
    generator &&
    value(buffer) === SHARED &&
    value(cb) === callback &&
    value(generator) === null
      ? { buffer, callback: cb, generator }
      : null;
  probe.destroy();
  return fields;
}

const readers = new WeakMap<Socket, (chunk: Buffer) => void>();

/** net's onread callback, called as a method of the socket that read `n` bytes into `buf`. */
function onRead(this: Socket, n: number, buf: Buffer): boolean {
  const copy = Buffer.allocUnsafe(n);
  buf.copy(copy, 0, 0, n);
  const reader = readers.get(this);
  // Bytes already in the stream (put back with unshift) go first.
  if (reader && this.readableLength === 0) {
    reader(copy);
    return true;
  }
  return this.push(copy);
}

/**
 * From now on `socket`'s reads go to `reader`, as copies of exactly the bytes read; false (and nothing
 * changed) when this Node does not allow it, and the caller reads 'data' events instead. `socket` must
 * be freshly accepted, with nothing read yet.
 */
export function takeClientReads(socket: Socket, reader: (chunk: Buffer) => void): boolean {
  const f = onReadFields();
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (buf: Buffer) => void } })._handle;
  if (!f || typeof handle?.useUserBuffer !== "function") return false;
  const s = socket as unknown as Record<symbol, unknown>;
  s[f.buffer] = SHARED;
  s[f.callback] = onRead;
  s[f.generator] = null;
  handle.useUserBuffer(SHARED);
  readers.set(socket, reader);
  return true;
}

/** `socket`'s reads go into its stream again (as copies), for its next owner. */
export function releaseClientReads(socket: Socket): void {
  readers.delete(socket);
}
