/**
 * The floor under the preview proxy's figures in `npm run bench`: the control plane's byte relay
 * (gateway/preview/byte-relay.ts) in front of one loopback port, forwarding every GET and HEAD with no
 * admission, no routing and no header rewriting, in a process of its own with the control plane's GC
 * setting. What separates it from nginx is Node (its event loop, streams and sockets) and the relay's
 * parsing; what separates the host form from it is Berth's own work: classification, admission, header
 * rewriting both ways, metrics. Run as `node bare-proxy.ts <upstream port>`; prints its port on stdout.
 */
import { createServer } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { ByteRelay } from "../gateway/preview/byte-relay.ts";
import { tuneGarbageCollector } from "../platform/gc-tuning.ts";

if (import.meta.main) {
  tuneGarbageCollector();
  const upstreamPort = Number(process.argv[2]);
  // Requests the relay does not forward (none in the bench) would land here.
  const server = createServer((_req, res) => {
    res.writeHead(501);
    res.end();
  });
  const relay = new ByteRelay({
    dial: ({ upstream }) =>
      new Promise((resolve, reject) => {
        const socket = connect(upstream.port, upstream.host);
        socket.once("connect", () => resolve(socket));
        socket.once("error", reject);
      }),
    admit: (head) => ({
      upstream: { host: "127.0.0.1", port: upstreamPort },
      target: head.target,
      headers: head.headers,
      rewriteResponse() {},
      failed: () => ({ status: 502, html: "" }),
      served() {},
    }),
  });
  relay.attach(server);
  server.listen(0, "127.0.0.1", () => console.log((server.address() as AddressInfo).port));
}
