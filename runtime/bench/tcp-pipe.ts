/**
 * A bare Node TCP pipe in front of a loopback port, in its own process: no HTTP, no WebSocket parsing, no
 * checks. It is the floor for any relay written in Node, so the bench can tell the relay's own cost from
 * the cost of one more Node process hop (which nginx, in C, does not pay).
 */

import type { AddressInfo, Server } from "node:net";
import { connect, createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { type BenchChild, forkBenchChild, serveParent } from "./child-process.ts";

export function spawnTcpPipe(upstreamPort: number): Promise<BenchChild<{ port: number }>> {
  return forkBenchChild(fileURLToPath(import.meta.url), { BERTH_PIPE_UPSTREAM: String(upstreamPort) });
}

/**
 * Listens on a free loopback port and pipes every connection to `upstreamPort`. Also run inside the bench's
 * control plane process (control-plane-main.ts), so the bench can tell the relay's own cost from the cost
 * of sharing a process (and its garbage collector) with the whole control plane.
 */
export async function startTcpPipe(upstreamPort: number): Promise<{ server: Server; port: number }> {
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
  return { server, port: (server.address() as AddressInfo).port };
}

/** CPU time (user + system, all threads: the garbage collector's helpers too) this process used, in ms. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

if (import.meta.main) {
  const { server, port } = await startTcpPipe(Number(process.env.BERTH_PIPE_UPSTREAM));
  serveParent({ port }, { cpuMs }, async () => {
    server.close();
  });
}
