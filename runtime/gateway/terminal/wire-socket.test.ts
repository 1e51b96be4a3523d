/**
 * WireSocket (relay.ts) reports each write's completion over a real loopback TCP socket: at once when the
 * socket took the bytes, and, for a write that had to queue, only once the peer has read them. The relay
 * resumes a paused leg from that report, so a queued write whose report went missing would stall the
 * terminal for good.
 */
import { once } from "node:events";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WireSocket } from "./relay.ts";

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

/** A connected pair: `ours` to write to, and the peer's end, paused (nothing read until it resumes). */
async function socketPair(): Promise<{ ours: Socket; peer: Socket }> {
  const server: Server = createServer({ pauseOnConnect: true });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const accepted = once(server, "connection") as Promise<[Socket]>;
  const ours = connect((server.address() as AddressInfo).port, "127.0.0.1");
  await once(ours, "connect");
  const [peer] = await accepted;
  cleanup.push(() => {
    ours.destroy();
    peer.destroy();
    server.close();
  });
  return { ours, peer };
}

function wire(socket: Socket): { wire: WireSocket; reports: () => number } {
  let count = 0;
  const w = new WireSocket(
    (err) => {
      if (!err) count++;
    },
    () => {},
  );
  w.socket = socket;
  return { wire: w, reports: () => count };
}

describe("WireSocket write reports", () => {
  it("reports a write the socket took at once before send returns", async () => {
    const { ours } = await socketPair();
    const { wire: w, reports } = wire(ours);
    w.send(Buffer.from("keystroke"));
    expect(ours.writableLength).toBe(0);
    expect(reports()).toBe(1);
  });

  it("reports a write that queued only after the peer has read all of it", async () => {
    const { ours, peer } = await socketPair();
    const { wire: w, reports } = wire(ours);
    // Far more than loopback's socket buffers hold while the peer reads nothing: most of it queues.
    const big = Buffer.alloc(32 * 1024 * 1024, 0x61);
    w.send(big);
    expect(ours.writableLength).toBeGreaterThan(0);
    expect(reports()).toBe(0);
    // Nothing else is written after it, as when this write paused the other leg.
    let received = 0;
    peer.on("data", (chunk: Buffer) => {
      received += chunk.length;
    });
    peer.resume();
    while (reports() === 0) await new Promise((r) => setImmediate(r));
    expect(ours.writableLength).toBe(0);
    expect(reports()).toBe(1);
    // Bytes the kernel already took may still be on their way to the peer's reader.
    while (received < big.length) await once(peer, "data");
    expect(received).toBe(big.length);
  });

  it("reports every write once, in order, when writes queue behind each other", async () => {
    const { ours, peer } = await socketPair();
    const { wire: w, reports } = wire(ours);
    for (let i = 0; i < 8; i++) w.send(Buffer.alloc(4 * 1024 * 1024, 0x30 + i));
    expect(reports()).toBeLessThan(8);
    // Each 4 MiB piece is one byte value: any byte out of place shows at the piece it landed in.
    const piece = 4 * 1024 * 1024;
    let received = 0;
    let misplaced = 0;
    peer.on("data", (chunk: Buffer) => {
      for (let at = 0; at < chunk.length; at += 4096)
        if (chunk[at] !== 0x30 + Math.floor((received + at) / piece)) misplaced++;
      received += chunk.length;
    });
    peer.resume();
    while (reports() < 8) await new Promise((r) => setImmediate(r));
    while (received < 8 * piece) await once(peer, "data");
    expect(reports()).toBe(8);
    expect(misplaced).toBe(0);
  });
});
