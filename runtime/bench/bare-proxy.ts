/**
 * The floor under the preview proxy's figures in `npm run bench`: the control plane's byte relay
 * (gateway/preview/byte-relay.ts) in front of one loopback port, forwarding every GET and HEAD with no
 * admission, no routing and no header policy (the relay itself still re-states each head's start line,
 * framing and connection fields), in a process of its own with the control plane's GC setting. What
 * separates it from nginx is Node (its event loop, streams and sockets) and the relay's parsing; what
 * separates the host form from it is Berth's own work: classification, admission, header rewriting both
 * ways, metrics. Run as `node bare-proxy.ts <upstream port>`; prints its port on stdout.
 * The bench control plane also starts one inside its own process on request (control-plane-main.ts), to
 * tell what sharing that process costs from what Berth's own work costs.
 */
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { UPSTREAM_ONREAD } from "../boxnet/upstream-reads.ts";
import { ByteRelay } from "../gateway/preview/byte-relay.ts";
import { serializeRequestHead, serializeResponseHead } from "../gateway/preview/http1.ts";
import { tuneGarbageCollector } from "../platform/gc-tuning.ts";

/** A bare relay to `upstreamPort` on a free loopback port. */
export async function startBareRelay(
  upstreamPort: number,
): Promise<{ server: Server; relay: ByteRelay; port: number }> {
  // Requests the relay does not forward (none in the bench) would land here.
  const server = createServer((_req, res) => {
    res.writeHead(501);
    res.end();
  });
  const relay = new ByteRelay({
    dial: ({ upstream }) =>
      new Promise((resolve, reject) => {
        const socket = connect({ port: upstream.port, host: upstream.host, onread: UPSTREAM_ONREAD });
        socket.once("connect", () => resolve(socket));
        socket.once("error", reject);
      }),
    admit: (head) => ({
      upstream: { host: "127.0.0.1", port: upstreamPort },
      requestHead: serializeRequestHead(head),
      responseHead: serializeResponseHead,
      failed: () => ({ status: 502, html: "" }),
      served() {},
    }),
  });
  relay.attach(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, relay, port: (server.address() as AddressInfo).port };
}

if (import.meta.main) {
  tuneGarbageCollector();
  const { port } = await startBareRelay(Number(process.argv[2]));
  console.log(port);
}
