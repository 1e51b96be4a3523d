/**
 * A stand-in dev server for tests and the benchmark: echoes what it received (method, url, headers,
 * body size) as JSON, serves fixed bodies, redirects, and runs a WebSocket echo (like Vite's HMR socket).
 * It counts requests, so a test can prove a refusal happened before any upstream connection opened.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";

export interface DevServer {
  port: number;
  server: Server;
  /** Requests and WebSocket handshakes received so far. */
  hits: number;
  /** Headers of the last WebSocket handshake. */
  lastUpgradeHeaders: IncomingHttpHeaders | null;
  close(): Promise<void>;
}

export const SMALL_BODY = Buffer.from("hello from the dev server\n");
export const MEGABYTE_BODY = Buffer.alloc(1024 * 1024, "abcdefghijklmnopqrstuvwxyz0123456789\n");

export async function startDevServer(host = "127.0.0.1"): Promise<DevServer> {
  const state = { hits: 0, lastUpgradeHeaders: null as IncomingHttpHeaders | null };
  const server = createServer((req, res) => {
    state.hits++;
    const path = (req.url ?? "/").split("?", 1)[0];
    if (path === "/small") {
      res.writeHead(200, { "content-type": "text/plain", "content-length": SMALL_BODY.length });
      return res.end(SMALL_BODY);
    }
    if (path === "/mb") {
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        "content-length": MEGABYTE_BODY.length,
      });
      return res.end(MEGABYTE_BODY);
    }
    if (path === "/redirect") {
      res.writeHead(302, {
        location: `http://${req.headers.host ?? "x"}/landed`,
        "set-cookie": "berth_session=planted; Path=/",
      });
      return res.end();
    }
    if (path === "/set-cookie") {
      res.writeHead(200, { "set-cookie": ["app=1; Path=/", "berth_session=planted; Path=/"] });
      return res.end("ok");
    }
    let bytes = 0;
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bodyBytes: bytes }));
    });
  });
  const wss = new WebSocketServer({ server });
  wss.on("connection", (ws, req) => {
    state.hits++;
    state.lastUpgradeHeaders = req.headers;
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    server,
    get hits() {
      return state.hits;
    },
    get lastUpgradeHeaders() {
      return state.lastUpgradeHeaders;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
