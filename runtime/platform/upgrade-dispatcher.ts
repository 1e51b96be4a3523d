/**
 * The single `upgrade` listener of the HTTP server. Koa never sees upgrades; without this, Node would hand
 * them to Koa, which answers 200 and leaves the client hanging (notes/protocols.md §7).
 */
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "./logger.ts";

export type UpgradeHandler = (
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  url: URL,
) => void | Promise<void>;

interface Route {
  match: (url: URL, req: IncomingMessage) => boolean;
  handler: UpgradeHandler;
}

export class UpgradeDispatcher {
  readonly #routes: Route[] = [];
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Handlers are tried in registration order; the first whose `match` is true owns the socket. */
  register(match: Route["match"], handler: UpgradeHandler): void {
    this.#routes.push({ match, handler });
  }

  attach(server: Server): void {
    server.on("upgrade", (req, socket, head) => {
      socket.on("error", () => socket.destroy());
      let url: URL;
      try {
        url = new URL(req.url ?? "/", "http://upgrade.invalid");
      } catch {
        return rejectUpgrade(socket, 400, "Bad Request");
      }
      const route = this.#routes.find((r) => r.match(url, req));
      if (!route) return rejectUpgrade(socket, 404, "Not Found");
      Promise.resolve(route.handler(req, socket, head, url)).catch((err) => {
        this.#log.error({ err, path: url.pathname }, "upgrade handler failed");
        rejectUpgrade(socket, 500, "Internal Server Error");
      });
    });
  }
}

/**
 * Answers an upgrade with a plain HTTP error and closes; safe to call on an already closed socket. Closed
 * once the answer is written, not only ended: the HTTP server allows half-open connections, and a client
 * that never closed its side would otherwise hold the socket for good.
 */
export function rejectUpgrade(socket: Duplex, status: number, reason: string, body = reason): void {
  if (!socket.writable) return void socket.destroy();
  closeWhenWritten(
    socket,
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/**
 * Ends `socket` (after `last`, if given) and destroys it once everything written has gone out: on a server
 * that allows half-open connections, an ended socket stays open for as long as its peer keeps its side
 * open. end()'s callback runs on finish, on an error, and on a socket already finished or destroyed.
 */
export function closeWhenWritten(socket: Duplex, last?: string): void {
  const close = () => socket.destroy();
  if (last === undefined) socket.end(close);
  else socket.end(last, close);
}
