/**
 * The preview proxy's lean path and where it listens: the preview domain on its own listener
 * (BERTH_PREVIEW_LISTEN), request metrics for requests that never enter Koa, and two processes sharing
 * one port (BERTH_WORKERS, SO_REUSEPORT) over one database.
 */
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { freePort } from "../store/embedded.ts";
import {
  createLoopbackWorkspace,
  json,
  startTestControlPlane,
  type TestControlPlane,
} from "../test/control-plane.ts";
import { createTestDatabase } from "../test/database.ts";
import { startDevServer } from "../test/dev-server.ts";
import { waitFor } from "../test/wait.ts";

const DOMAIN = "preview.localhost";

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A request with exactly these headers (fetch cannot set Host), on a fresh connection. */
function raw(port: number | string, path: string, headers: Record<string, string> = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

/** A workspace whose box is this machine's loopback, with a preview of `port` declared. */
async function declarePreview(
  cp: TestControlPlane,
  port: number,
): Promise<{ previewId: string; workspaceId: string }> {
  const workspaceId = await createLoopbackWorkspace(cp);
  return { previewId: await addPreview(cp, workspaceId, port), workspaceId };
}

async function addPreview(cp: TestControlPlane, workspaceId: string, port: number): Promise<string> {
  const declared = await cp.api(`/api/v1/workspaces/${workspaceId}/previews`, {
    method: "POST",
    token: cp.localToken,
    json: { port },
  });
  expect(declared.status).toBe(201);
  return (await json(declared)).preview.id;
}

/** Redeems a fresh one-time code on `port` with the preview's Host; returns the cookie pair. */
async function signIn(cp: TestControlPlane, previewId: string, port: number, host: string): Promise<string> {
  const opened = await json(
    await cp.api(`/api/v1/previews/${previewId}/open`, { method: "POST", token: cp.localToken, json: {} }),
  );
  const u = new URL(opened.url);
  const res = await raw(port, `${u.pathname}${u.search}`, { host });
  expect(res.status).toBe(303);
  return String(res.headers["set-cookie"]).split(";", 1)[0]!;
}

describe("the preview domain on its own listener (BERTH_PREVIEW_LISTEN)", async () => {
  const previewPort = await freePort();
  const cp = await startTestControlPlane({
    BERTH_PREVIEW_DOMAIN: DOMAIN,
    BERTH_PREVIEW_LISTEN: `127.0.0.1:${previewPort}`,
  });
  const dev = await startDevServer();
  afterAll(() => dev.close());
  const { previewId, workspaceId } = await declarePreview(cp, dev.port);
  // Browsers send the public URL's port (a front proxy maps the preview domain onto this listener).
  const previewHost = `${previewId}.${DOMAIN}:${new URL(cp.url).port}`;
  const bearer = { authorization: `Bearer ${cp.localToken}` };

  it("serves preview hosts there: sign-in, HTTP and HMR WebSockets", async () => {
    const cookie = await signIn(cp, previewId, previewPort, previewHost);
    const res = await raw(previewPort, "/echo?x=1", { host: previewHost, cookie: `${cookie}; app=1` });
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body);
    expect(seen.url).toBe("/echo?x=1");
    expect(seen.headers.cookie).toBe("app=1");
    const ws = await new Promise<WebSocket>((resolve, reject) => {
      const s = new WebSocket(`ws://127.0.0.1:${previewPort}/hmr`, {
        headers: { host: previewHost, cookie, origin: `http://${previewHost}` },
      });
      s.once("open", () => resolve(s));
      s.once("error", reject);
    });
    const reply = new Promise<string>((resolve) => ws.once("message", (d) => resolve(d.toString())));
    ws.send("hmr-update");
    expect(await reply).toBe("hmr-update");
    ws.close();
    // The API's listener still serves the host form too (local mode's URLs point there).
    expect((await raw(new URL(cp.url).port, "/echo", { host: previewHost, cookie })).status).toBe(200);
  });

  it("answers anything but a preview host with the proxy's 404 page, never the API", async () => {
    const before = dev.hits;
    for (const [path, host] of [
      ["/api/v1/workspaces", `127.0.0.1:${previewPort}`],
      ["/healthz", `127.0.0.1:${previewPort}`],
      [`/api/v1/previews/${previewId}/echo`, `127.0.0.1:${previewPort}`],
      ["/api/v1/workspaces", "api.example"],
    ] as const) {
      const res = await raw(previewPort, path, { host, ...bearer });
      expect(res.status, `${host}${path}`).toBe(404);
      expect(res.headers["content-type"]).toContain("text/html");
      expect(res.body).toContain("Preview not found");
    }
    const upgrade = await new Promise<number>((resolve, reject) => {
      const s = new WebSocket(`ws://127.0.0.1:${previewPort}/api/v1/workspaces/x/terminal`, {
        headers: bearer,
      });
      s.once("unexpected-response", (_req, res) => resolve(res.statusCode!));
      s.once("open", () => reject(new Error("opened")));
      s.once("error", reject);
    });
    expect(upgrade).toBe(404);
    expect(dev.hits).toBe(before);
  });

  it("never dials its own listener as a preview's port", async () => {
    const own = await addPreview(cp, workspaceId, previewPort);
    const host = `${own}.${DOMAIN}:${new URL(cp.url).port}`;
    const cookie = await signIn(cp, own, previewPort, host);
    // Asked on the API's listener: the preview listener's port is refused as the control plane's own.
    const res = await raw(new URL(cp.url).port, "/", { host, cookie });
    expect(res.status).toBe(403);
    expect(res.body).toContain("This port cannot be previewed");
  });

  it("relays only the final response after a 103, and stops the upstream request when the client leaves", async () => {
    let upstreamClosed = false;
    let hangArrived = false;
    const upstream = createServer((req, res) => {
      if (req.url === "/hints") {
        res.writeEarlyHints({ link: "</app.js>; rel=preload; as=script" });
        res.writeHead(200, { "content-type": "text/plain" });
        return res.end("final");
      }
      // /hang: never answers; the proxy must give the request up once the browser does.
      hangArrived = true;
      req.socket.once("close", () => {
        upstreamClosed = true;
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    try {
      const port = (upstream.address() as AddressInfo).port;
      const id = await addPreview(cp, workspaceId, port);
      const host = `${id}.${DOMAIN}:${new URL(cp.url).port}`;
      const cookie = await signIn(cp, id, previewPort, host);

      const hints = await raw(previewPort, "/hints", { host, cookie });
      expect(hints.status).toBe(200);
      expect(hints.body).toBe("final");

      const client = request({
        host: "127.0.0.1",
        port: previewPort,
        path: "/hang",
        headers: { host, cookie },
      });
      client.on("error", () => {});
      client.end();
      await waitFor("the request to reach the dev server", () => hangArrived);
      client.destroy();
      await waitFor("the proxy to close the upstream request", () => upstreamClosed);
    } finally {
      upstream.closeAllConnections();
      upstream.close();
    }
  });

  it("counts requests the lean path served in the request metrics, by form", async () => {
    const text = await (await cp.api("/metrics")).text();
    expect(text).toMatch(
      /http_request_duration_seconds_count\{method="GET",route="preview:host",status="200"\} [1-9]/,
    );
  });
});

describe("two control-plane processes on one port (BERTH_WORKERS=2)", async () => {
  const { url: databaseUrl } = await createTestDatabase();
  const port = String(await freePort());
  const shared = {
    DATABASE_URL: databaseUrl,
    BERTH_PORT: port,
    BERTH_WORKERS: "2",
    BERTH_PREVIEW_DOMAIN: DOMAIN,
    BERTH_LOCAL_TOKEN: "w".repeat(43),
  };
  const a = await startTestControlPlane(shared);
  const b = await startTestControlPlane(shared);
  const dev = await startDevServer();
  afterAll(() => dev.close());

  it("both bind the port and the kernel spreads connections over them", async () => {
    const accepted = [0, 0];
    a.server.on("connection", () => accepted[0]!++);
    b.server.on("connection", () => accepted[1]!++);
    const { previewId } = await declarePreview(a, dev.port);
    const host = `${previewId}.${DOMAIN}:${port}`;
    const cookie = await signIn(a, previewId, Number(port), host);
    // Each request is a new connection: whichever process accepts it routes the preview (the cookie and the
    // route are the database's and the shared keys', not one process's).
    await waitFor("both processes to answer", async () => {
      const res = await raw(port, "/echo", { host, cookie });
      expect(res.status).toBe(200);
      return accepted[0]! > 0 && accepted[1]! > 0;
    });
  });
});
