/**
 * The upgrade dispatcher over real TCP: an upgrade no handler owns is answered 404 and its socket closed,
 * even for a client that keeps its own side open (the HTTP server allows half-open connections).
 */
import { once } from "node:events";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterEach, expect, it } from "vitest";
import { upgradeHalfOpen } from "../../box/testing/half-open-upgrade.ts";
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
  const accepted: Socket[] = [];
  server.on("connection", (socket: Socket) => accepted.push(socket));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => {
    server.closeAllConnections();
    for (const s of accepted) s.destroy();
    server.close();
  });
  const { socket: client, answer } = await upgradeHalfOpen(
    (server.address() as AddressInfo).port,
    "/nowhere",
  );
  cleanups.push(() => client.destroy());
  expect(answer).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/);
  await waitFor("the server's side closed", () => accepted[0]!.destroyed, 10_000);
});
