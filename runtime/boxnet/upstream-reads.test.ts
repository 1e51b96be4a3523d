/**
 * Reading the box's socket into reused buffers (upstream-reads.ts) over a real loopback TCP socket: every
 * byte arrives once and in order through the handshake phase (copies pushed into the stream), bytes handed
 * back with `unshift` (as `ws` does), and direct reads; and a view the reader said it still holds is never
 * overwritten by a later read.
 */
import { randomBytes } from "node:crypto";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { attachUpstreamReads, holdsOwnReadBuffer, UPSTREAM_ONREAD } from "./upstream-reads.ts";

const HEAD = Buffer.from("HTTP/1.1 101 Switching Protocols\r\n\r\n");

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A server that sends HEAD, then `payload` in `writes` pieces, then ends. */
async function serve(payload: Buffer, writes: number[]): Promise<number> {
  const server = createServer((socket) => {
    socket.write(HEAD);
    let at = 0;
    for (const n of writes) {
      socket.write(payload.subarray(at, at + n));
      at += n;
    }
    socket.end(payload.subarray(at));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as AddressInfo).port;
}

/**
 * Reads like the relay: 'data' until the head is complete, hands the rest back with `unshift`, then attaches.
 * Every other chunk is kept as a view (not copied) and reported as retained, as a queued write would be.
 */
async function receive(port: number): Promise<{ body: Buffer; direct: number }> {
  const socket: Socket = connect({ host: "127.0.0.1", port, onread: UPSTREAM_ONREAD });
  const parts: Buffer[] = [];
  let keptLast = false;
  let direct = 0;
  let n = 0;
  const take = (chunk: Buffer) => {
    keptLast = n++ % 2 === 0;
    parts.push(keptLast ? chunk : Buffer.from(chunk));
  };
  let head = Buffer.alloc(0);
  const onHandshake = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf("\r\n\r\n");
    if (end < 0) return;
    socket.removeListener("data", onHandshake);
    socket.pause();
    const rest = head.subarray(end + 4);
    if (rest.length > 0) socket.unshift(rest);
    attachUpstreamReads(
      socket,
      (chunk) => {
        direct++;
        take(chunk);
      },
      // As a queued write towards the browser would be: the view kept last may still be read.
      {
        get bufferedAmount() {
          return keptLast ? 1 : 0;
        },
      },
    );
    socket.on("data", take);
    socket.resume();
  };
  socket.on("data", onHandshake);
  await new Promise<void>((resolve, reject) => {
    socket.once("end", resolve);
    socket.once("error", reject);
  });
  socket.destroy();
  return { body: Buffer.concat(parts), direct };
}

/**
 * A server that sends `payload` in `pieces`, each when the client sends a byte, then ends: reads of known
 * sizes. Connected to with the relay's `onread`; the test attaches its reader as the socket connects (no
 * handshake), so every byte is read directly.
 */
async function connectToPieces(payload: Buffer, pieces: number[]): Promise<Socket> {
  const server = createServer((socket) => {
    let sent = 0;
    let at = 0;
    socket.on("data", () => {
      if (sent === pieces.length) {
        socket.end();
        return;
      }
      const size = pieces[sent++]!;
      socket.write(payload.subarray(at, at + size));
      at += size;
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return connect({
    host: "127.0.0.1",
    port: (server.address() as AddressInfo).port,
    onread: UPSTREAM_ONREAD,
  });
}

describe("upstream reads into reused buffers", () => {
  it("delivers bulk output whole and in order, never overwriting a view still held", async () => {
    const payload = randomBytes(6 * 1024 * 1024);
    const port = await serve(payload, [10, 3000, 5000, 1024 * 1024, 17]);
    const { body, direct } = await receive(port);
    expect(body.length).toBe(payload.length);
    expect(body.equals(payload)).toBe(true);
    expect(direct).toBeGreaterThan(0);
  });

  it("delivers small writes (keystroke echo) whole and in order", async () => {
    const payload = randomBytes(2000);
    const port = await serve(
      payload,
      Array.from({ length: 199 }, () => 10),
    );
    const { body } = await receive(port);
    expect(body.equals(payload)).toBe(true);
  });

  it.each([
    ["behind (every write towards it queues)", true],
    ["keeping up", false],
  ])(
    "holds memory in proportion to the bytes read, not 64 KiB per read, for a browser %s",
    async (_, behind) => {
      // Pieces of 6,000 and 2,000 bytes in turn, each sent once the previous one has arrived: reads of a few
      // KiB, as tmux's redraws give, on both sides of the shared buffer's 4 KiB.
      const pieces = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 6000 : 2000));
      const payload = randomBytes(pieces.reduce((a, b) => a + b, 0));
      const socket = await connectToPieces(payload, pieces);
      const parts: Buffer[] = [];
      // The memory behind what was handed over: what the collector has to chase.
      const handedOver = new Set<ArrayBufferLike>();
      let received = 0;
      let boundary = 0;
      let next = 0;
      const take = (chunk: Buffer) => {
        handedOver.add(chunk.buffer);
        // Behind, a queued write keeps what it was handed; keeping up, the write is done before the next read.
        parts.push(behind ? chunk : Buffer.from(chunk));
        received += chunk.length;
        while (next < pieces.length && received >= boundary + pieces[next]!) {
          boundary += pieces[next++]!;
          socket.write("k");
        }
      };
      socket.once("connect", () => {
        // A clock that stands still: no pause in the output, however slow the machine.
        attachUpstreamReads(socket, take, { bufferedAmount: behind ? 1 : 0 }, () => 0);
        socket.resume(); // reading starts with a flowing stream
        socket.write("k");
      });
      await new Promise<void>((resolve, reject) => {
        socket.once("end", resolve);
        socket.once("error", reject);
      });
      socket.destroy();
      expect(Buffer.concat(parts).equals(payload)).toBe(true);
      // Copies share Node's buffer pool, and a socket keeps its own buffer through reads of a few KiB. A fresh
      // 64 KiB buffer per read made this about 1.5 MB for these 160 KB.
      const bytes = [...handedOver].reduce((sum, b) => sum + b.byteLength, 0);
      expect(bytes).toBeLessThan(2 * payload.length);
    },
  );

  it.each([
    ["a short read after a pause gives it back", 1_000, false],
    ["short reads in a burst keep it", 0, true],
  ])("a socket's own read buffer: %s", async (_, pauseMs, held) => {
    // Bulk output (a read fills the shared buffer, then the socket reads into its own), then 500 bytes:
    // after a pause in the output (an echo, a pong, a status line) or straight after, as tmux's redraws
    // come. No handshake here: the reader is attached as the socket connects.
    const pieces = [6000, 500];
    const payload = randomBytes(6500);
    const socket = await connectToPieces(payload, pieces);
    let now = 0;
    const parts: Buffer[] = [];
    let received = 0;
    const take = (chunk: Buffer) => {
      parts.push(Buffer.from(chunk));
      received += chunk.length;
      if (received === 6000) {
        // Where the output pauses, if it does: the next read comes `pauseMs` later.
        now += pauseMs;
        socket.write("k");
      } else if (received === 6500) socket.write("k");
    };
    socket.once("connect", () => {
      attachUpstreamReads(socket, take, { bufferedAmount: 0 }, () => now);
      socket.resume(); // reading starts with a flowing stream
      socket.write("k");
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("end", resolve);
      socket.once("error", reject);
    });
    expect(Buffer.concat(parts).equals(payload)).toBe(true);
    expect(holdsOwnReadBuffer(socket)).toBe(held);
    socket.destroy();
  });

  it("keeps sockets reading at the same time apart (the shared buffer is copied out of at once)", async () => {
    const payloads = [randomBytes(3 * 1024 * 1024), randomBytes(3 * 1024 * 1024), randomBytes(5000)];
    const ports = await Promise.all(payloads.map((p) => serve(p, [100, 4096, 70_000])));
    const bodies = await Promise.all(ports.map(receive));
    for (const [i, p] of payloads.entries()) expect(bodies[i]!.body.equals(p)).toBe(true);
  });
});
