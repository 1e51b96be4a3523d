/**
 * A bare Node TCP pipe in front of a loopback port, in its own process: no HTTP, no WebSocket parsing, no
 * checks. It is the floor for any relay written in Node, so the bench can tell the relay's own cost from
 * the cost of one more Node process hop (which nginx, in C, does not pay).
 */

import type { AddressInfo } from "node:net";
import { connect, createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { type BenchChild, forkBenchChild, serveParent } from "./child-process.ts";

export function spawnTcpPipe(upstreamPort: number): Promise<BenchChild<{ port: number }>> {
  return forkBenchChild(fileURLToPath(import.meta.url), { BERTH_PIPE_UPSTREAM: String(upstreamPort) });
}

if (import.meta.main) {
  const upstreamPort = Number(process.env.BERTH_PIPE_UPSTREAM);
  const server = createServer((client) => {
    const upstream = connect(upstreamPort, "127.0.0.1");
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.pipe(upstream).on("error", () => client.destroy());
    upstream.pipe(client).on("error", () => upstream.destroy());
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  serveParent({ port: (server.address() as AddressInfo).port }, {}, async () => {
    server.close();
  });
}
