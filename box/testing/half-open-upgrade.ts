/**
 * A raw client that keeps its side of a connection open after the server's FIN (`allowHalfOpen`), as a
 * careless or hostile client may: for tests that a refused WebSocket upgrade's socket is closed, not only
 * ended, by a server that allows half-open connections (node:http does).
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";

/** A WebSocket handshake request for `path`, with `headers` besides the handshake's own, as raw text. */
export function upgradeRequest(path: string, headers: Record<string, string> = {}): string {
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
  return `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra.join("")}\r\n`;
}

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
  socket.write(upgradeRequest(path));
  await ended;
  return { socket, answer: Buffer.concat(chunks).toString("latin1") };
}
