/**
 * A box terminal endpoint without tmux for the relay's raw-throughput benchmark: after the client's init it
 * sends `total` bytes of OUTPUT, once, as fast as its socket drains. It runs in its own process (see
 * runtime/bench/child-process.ts), as a box's endpoint does, and answers `heap` for the memory figures.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { WebSocketServer } from "ws";
import { basicAuthHeader, TTY_SUBPROTOCOL } from "../../box/terminal/protocol.ts";
import { type BenchChild, forkBenchChild, serveParent } from "./child-process.ts";

export function spawnBlastEndpoint(credential: string, total: number): Promise<BenchChild<{ port: number }>> {
  return forkBenchChild(fileURLToPath(import.meta.url), {
    BERTH_BLAST_CREDENTIAL: credential,
    BERTH_BLAST_BYTES: String(total),
  });
}

if (import.meta.main) {
  const credential = process.env.BERTH_BLAST_CREDENTIAL!;
  const total = Number(process.env.BERTH_BLAST_BYTES);
  // Plain requests get an answer (nginx's readiness probe is one); only upgrades are served.
  const server = createServer((_req, res) => res.writeHead(426).end());
  const wss = new WebSocketServer({
    server,
    perMessageDeflate: false,
    handleProtocols: (p) => (p.has(TTY_SUBPROTOCOL) ? TTY_SUBPROTOCOL : false),
  });
  const chunk = Buffer.concat([Buffer.of(0x30), Buffer.alloc(64 * 1024, 0x78)]);
  wss.on("connection", (ws, req) => {
    if (req.headers.authorization !== basicAuthHeader(credential)) return ws.close(1008);
    ws.once("message", () => {
      ws.send(Buffer.from("1blast"));
      ws.send(Buffer.from("2{}"));
      // One blast, on the first INPUT; PAUSE and RESUME (the relay's backpressure) are ignored, as ttyd
      // 1.7.7 ignores them: only the socket's own backpressure holds the sender back.
      let started = false;
      ws.on("message", (data: Buffer) => {
        if (started || data[0] !== 0x30) return;
        started = true;
        let sent = 0;
        const pump = () => {
          while (sent < total && ws.readyState === ws.OPEN && ws.bufferedAmount < 1024 * 1024) {
            sent += chunk.length - 1;
            ws.send(chunk, { binary: true }, () => setImmediate(pump));
          }
        };
        pump();
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  serveParent({ port: (server.address() as AddressInfo).port }, {}, async () => {
    wss.close();
    server.close();
  });
}
