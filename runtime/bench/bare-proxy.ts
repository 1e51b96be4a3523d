/**
 * The floor under the preview proxy's figures in `npm run bench`: a node:http server forwarding every
 * request to one loopback port with undici, the way the proxy's lean path does, but with no checks, no
 * routing and no header rewriting. What separates it from nginx is Node's HTTP stack; what separates the
 * proxy from it is Berth's own work (it runs with the control plane's GC setting, gc-tuning.ts). Run as its own process, `node bare-proxy.ts <upstream port>`; prints
 * its port on stdout.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Agent, type Dispatcher } from "undici";
import { tuneGarbageCollector } from "../platform/gc-tuning.ts";

if (import.meta.main) {
  // The control plane's own GC setting (gc-tuning.ts), so the floor differs from it by Berth's work alone.
  tuneGarbageCollector();
  const origin = `http://127.0.0.1:${process.argv[2]}`;
  const agent = new Agent({ connections: 256 });
  const server = createServer((req, res) => {
    // undici's dispatch() with a minimal handler, as the lean path's forwarder.ts does, minus its checks.
    agent.dispatch(
      {
        origin,
        path: req.url ?? "/",
        method: (req.method ?? "GET") as Dispatcher.HttpMethod,
        headers: req.headers as Record<string, string>,
      },
      {
        // Its presence tells undici this handler speaks the controller API (as forwarder.ts's does).
        onRequestStart() {},
        onResponseStart(_controller, statusCode, headers) {
          if (statusCode < 200) return;
          delete headers["transfer-encoding"];
          res.writeHead(statusCode, headers as Record<string, string>);
        },
        onResponseData(controller, chunk) {
          if (!res.write(chunk)) {
            controller.pause();
            res.once("drain", () => controller.resume());
          }
        },
        onResponseEnd() {
          res.end();
        },
        onResponseError() {
          res.destroy();
        },
      },
    );
  });
  server.listen(0, "127.0.0.1", () => console.log((server.address() as AddressInfo).port));
}
