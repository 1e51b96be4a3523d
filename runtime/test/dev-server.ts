/**
 * A stand-in dev server for tests and the benchmark: echoes what it received (method, url, headers,
 * body size) as JSON, serves fixed bodies, redirects, and runs a WebSocket echo (like Vite's HMR socket).
 * It counts requests, so a test can prove a refusal happened before any upstream connection opened. On
 * cue it misbehaves the ways proxies must survive: `/early` answers without reading the request's body,
 * a WebSocket handshake to `/hold…` gets no answer (its socket is in `heldUpgrades`, closed when the
 * proxy leaves), and the message `drop` makes the echo drop its connection without a close frame.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { WebSocketServer } from "ws";

export interface DevServer {
  port: number;
  server: Server;
  /** Requests and WebSocket handshakes received so far. */
  hits: number;
  /** Headers of the last WebSocket handshake. */
  lastUpgradeHeaders: IncomingHttpHeaders | null;
  /** The sockets of handshakes to `/hold…`, never answered; each closes when the proxy closes its side. */
  heldUpgrades: Socket[];
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
    if (path === "/early") {
      res.writeHead(200, { "content-type": "text/plain", "content-length": 5 });
      return res.end("early");
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
  const heldUpgrades: Socket[] = [];
  const wss = new WebSocketServer({
    server,
    verifyClient: (info, accept) => {
      if (!info.req.url?.startsWith("/hold")) return accept(true);
      state.hits++;
      // Read, only to notice the proxy leave (its FIN): a held handshake then closes.
      const socket = info.req.socket;
      heldUpgrades.push(socket);
      socket.once("end", () => socket.destroy());
      socket.resume();
    },
  });
  wss.on("connection", (ws, req) => {
    state.hits++;
    state.lastUpgradeHeaders = req.headers;
    ws.on("message", (data, isBinary) => {
      if (!isBinary && data.toString() === "drop") return ws.terminate();
      ws.send(data, { binary: isBinary });
    });
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
    heldUpgrades,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        for (const s of heldUpgrades) s.destroy();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
