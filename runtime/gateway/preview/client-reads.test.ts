/**
 * client-reads.ts on real loopback sockets: this project's Node lets the relay take an accepted socket's
 * reads (if a Node upgrade removes the internals it uses, this fails rather than the relay silently
 * falling back to 'data' events), reads arrive whole and in order, backpressure pauses the socket, and a
 * released socket is an ordinary stream again, bytes put back first.
 */
import { once } from "node:events";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { waitFor } from "../../test/wait.ts";
import { releaseClientReads, takeClientReads } from "./client-reads.ts";

const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

/** A connected pair: the accepted socket (passed to `onAccept` as the server's listener runs) and the client. */
async function pair(onAccept: (accepted: Socket) => void): Promise<{ accepted: Socket; client: Socket }> {
  let accepted: Socket | undefined;
  const server = createServer((s) => {
    accepted = s;
    sockets.push(s);
    onAccept(s);
  });
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const client = connect((server.address() as AddressInfo).port, "127.0.0.1");
  sockets.push(client);
  await once(client, "connect");
  await waitFor("the server to accept", () => accepted !== undefined);
  return { accepted: accepted!, client };
}

/** A connected pair whose accepted side's reads were taken, collected in `got`. */
async function takenPair(): Promise<{ accepted: Socket; client: Socket; got: Buffer[]; taken: boolean }> {
  const got: Buffer[] = [];
  let taken = false;
  const { accepted, client } = await pair((s) => {
    taken = takeClientReads(s, (chunk) => got.push(chunk));
  });
  return { accepted, client, got, taken };
}

describe("takeClientReads", () => {
  it("takes an accepted socket's reads on this Node: every byte to the reader, in order, none as 'data'", async () => {
    const events: Buffer[] = [];
    const { accepted, client, got, taken } = await takenPair();
    expect(taken).toBe(true);
    accepted.on("data", (chunk: Buffer) => events.push(chunk));
    const sent: Buffer[] = [];
    for (let i = 0; i < 50; i++) {
      const chunk = Buffer.from(`request ${i} `.repeat(1 + (i % 7) * 300));
      sent.push(chunk);
      client.write(chunk);
    }
    const all = Buffer.concat(sent);
    await waitFor("every byte", () => got.reduce((n, c) => n + c.length, 0) >= all.length);
    expect(Buffer.concat(got).equals(all)).toBe(true);
    expect(events).toEqual([]);
  });

  it("keeps each chunk it handed over intact while later reads arrive", async () => {
    const got: Array<{ chunk: Buffer; copy: string }> = [];
    const { client } = await pair((s) => {
      takeClientReads(s, (chunk) => got.push({ chunk, copy: chunk.toString("latin1") }));
    });
    for (let i = 0; i < 20; i++) {
      client.write(Buffer.alloc(3000 + i, String.fromCharCode(97 + i)));
      await waitFor(`read ${i}`, () => got.length > i);
    }
    for (const { chunk, copy } of got) expect(chunk.toString("latin1")).toBe(copy);
  });

  it("stops reading while the socket is paused, and reads the rest once resumed", async () => {
    const { accepted, client, got } = await takenPair();
    client.write("first");
    await waitFor("the first read", () => got.length === 1);
    accepted.pause();
    // An echo on another connection, after "second" is written: by the time it comes back, the loop has
    // polled with "second" readable, so a socket still reading would have had it.
    const { client: probe } = await pair((s) => s.pipe(s));
    client.write("second");
    probe.write("x");
    await once(probe, "data");
    expect(Buffer.concat(got).toString()).toBe("first");
    accepted.resume();
    await waitFor("the rest", () => Buffer.concat(got).toString() === "firstsecond");
  });

  it("hands a released socket back as a stream, the bytes put back first", async () => {
    const { accepted, client, got } = await takenPair();
    client.write("GET / HTTP/1.1\r\n");
    await waitFor("the first read", () => got.length === 1);
    accepted.pause();
    accepted.unshift(Buffer.concat(got));
    releaseClientReads(accepted);
    const streamed: Buffer[] = [];
    accepted.on("data", (chunk: Buffer) => streamed.push(chunk));
    accepted.resume();
    client.write("Host: a\r\n\r\n");
    await waitFor(
      "the whole head as data",
      () => Buffer.concat(streamed).toString() === "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    expect(got).toHaveLength(1);
  });

  it.each(["taken", "released"])(
    "reports a client's reset as ECONNRESET on a socket whose reads were %s",
    async (state) => {
      const { accepted, client } = await takenPair();
      if (state === "released") {
        accepted.pause();
        releaseClientReads(accepted);
        accepted.on("data", () => {});
        accepted.resume();
      }
      const failed = once(accepted, "error");
      // Not events.once: its promise for 'close' rejects on the 'error' that comes first.
      const closed = new Promise((resolve) => accepted.once("close", resolve));
      client.resetAndDestroy();
      const [err] = (await failed) as [NodeJS.ErrnoException];
      expect(err.code).toBe("ECONNRESET");
      await closed;
    },
  );

  it("still ends the stream when the client sends FIN", async () => {
    const { accepted, client } = await pair((s) => {
      takeClientReads(s, () => {});
    });
    const ended = once(accepted, "end");
    accepted.resume();
    client.end();
    await ended;
  });
});
