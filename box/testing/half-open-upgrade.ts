/**
 * A raw client that keeps its side of a connection open after the server's FIN (`allowHalfOpen`), as a
 * careless or hostile client may: for tests that a refused WebSocket upgrade's socket is closed, not only
 * ended, by a server that allows half-open connections (node:http does).
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";

/** Sends a WebSocket upgrade request for `path`; resolves with the answer once the server ended its side. */
export async function upgradeHalfOpen(
  port: number,
  path: string,
): Promise<{ socket: Socket; answer: string }> {
  const socket = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  socket.on("error", () => {});
  await once(socket, "connect");
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  const ended = once(socket, "end");
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
  );
  await ended;
  return { socket, answer: Buffer.concat(chunks).toString("latin1") };
}
