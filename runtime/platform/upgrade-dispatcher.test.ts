/**
 * The upgrade dispatcher over real TCP: an upgrade no handler owns is answered 404 and its socket closed,
 * even for a client that keeps its own side open (the HTTP server allows half-open connections).
 */
import { once } from "node:events";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { afterEach, expect, it } from "vitest";
import { waitFor } from "../test/wait.ts";
import { createLogger } from "./logger.ts";
import { UpgradeDispatcher } from "./upgrade-dispatcher.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

it("answers an upgrade nobody owns with 404 and closes it, though the client keeps its side open", async () => {
  const server = http.createServer((_req, res) => res.end());
  new UpgradeDispatcher(createLogger("silent")).attach(server);
  const accepted: net.Socket[] = [];
  server.on("connection", (socket: net.Socket) => accepted.push(socket));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => {
    server.closeAllConnections();
    for (const s of accepted) s.destroy();
    server.close();
  });
  const client = net.connect({
    port: (server.address() as AddressInfo).port,
    host: "127.0.0.1",
    allowHalfOpen: true,
  });
  cleanups.push(() => client.destroy());
  await once(client, "connect");
  const received: Buffer[] = [];
  client.on("data", (chunk: Buffer) => received.push(chunk));
  const ended = once(client, "end");
  client.write(
    "GET /nowhere HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
  );
  await ended;
  expect(Buffer.concat(received).toString("latin1")).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/);
  await waitFor("the server's side closed", () => accepted[0]!.destroyed, 10_000);
});
