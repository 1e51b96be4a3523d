/**
 * The resolver against real sockets: 127.0.0.1 plays a box's public address and 127.0.0.2 its tailnet
 * address, on the same port, as on a VM where one ttyd port is reachable over both.
 */
import { execFileSync, spawn } from "node:child_process";
import { request } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { createLogger } from "../platform/logger.ts";
import { createMetrics, type Metrics } from "../platform/metrics.ts";
import { waitFor } from "../test/wait.ts";
import { addressPolicy } from "./address-policy.ts";
import {
  BoxUnreachableError,
  forWebSocket,
  type UpstreamOptions,
  UpstreamResolver,
} from "./path-resolver.ts";

const PUBLIC = "127.0.0.1";
const TAILNET = "127.0.0.2";

interface Listener {
  server: Server;
  accepted: Socket[];
  close(): Promise<void>;
}

function listen(
  host: string,
  port = 0,
  server: Server = createServer(),
): Promise<Listener & { port: number }> {
  const accepted: Socket[] = [];
  server.on("connection", (s: Socket) => {
    accepted.push(s);
    s.on("error", () => {});
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const bound = (server.address() as { port: number }).port;
      resolve({
        server,
        port: bound,
        accepted,
        close: () =>
          new Promise<void>((r) => {
            for (const s of accepted) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}

const opened: Array<{ close(): unknown }> = [];
afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await o.close();
});

function resolver(options: Partial<UpstreamOptions> = {}): { upstream: UpstreamResolver; metrics: Metrics } {
  const metrics = createMetrics();
  const upstream = new UpstreamResolver({
    metrics,
    log: createLogger("silent"),
    allowAddress: addressPolicy({ allowLoopback: true }),
    connectTimeoutMs: 500,
    ttlMs: 5_000,
    reprobeMs: 100,
    ...options,
  });
  opened.push(upstream);
  return { upstream, metrics };
}

async function count(metrics: Metrics, name: keyof Metrics, labels: Record<string, string> = {}) {
  const metric = metrics[name] as { get(): Promise<{ values: Array<{ labels: object; value: number }> }> };
  const { values } = await metric.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, l]) => (v.labels as Record<string, unknown>)[k] === l))
    .reduce((sum, v) => sum + v.value, 0);
}

/** A port free on both loopback addresses, with a listener on the tailnet one. */
async function tailnetOnly(): Promise<Listener & { port: number }> {
  const tailnet = await listen(TAILNET);
  opened.push(tailnet);
  return tailnet;
}

const box = (port: number, over: Partial<{ publicIp: string | null; tailnetIp: string | null }> = {}) => ({
  id: `instance-${port}`,
  publicIp: PUBLIC,
  tailnetIp: TAILNET,
  ...over,
});

describe("UpstreamResolver", () => {
  it("takes the public path when the box answers there", async () => {
    const tailnet = await tailnetOnly();
    const primary = await listen(PUBLIC, tailnet.port);
    opened.push(primary);
    const { upstream, metrics } = resolver();
    const { socket, path } = await upstream.connect(box(tailnet.port), tailnet.port);
    socket.destroy();
    expect(path).toBe("public");
    await waitFor("the public listener to accept", () => primary.accepted.length === 1);
    expect(tailnet.accepted).toHaveLength(0);
    expect(await count(metrics, "upstreamConnections", { path: "public", result: "ok" })).toBe(1);
    expect(await count(metrics, "upstreamConnectSeconds")).toBeGreaterThan(0);
  });

  it("falls back to the tailnet, remembers it, and dials it first from then on", async () => {
    const tailnet = await tailnetOnly();
    const { upstream, metrics } = resolver();
    const b = box(tailnet.port);
    for (let i = 0; i < 3; i++) {
      const { socket, path } = await upstream.connect(b, tailnet.port);
      socket.destroy();
      expect(path).toBe("tailnet");
    }
    expect(upstream.currentPath(b.id)).toBe("tailnet");
    // Only the first connection paid for the dead primary.
    expect(await count(metrics, "upstreamConnections", { path: "public", result: "refused" })).toBe(1);
    expect(await count(metrics, "upstreamConnections", { path: "tailnet", result: "ok" })).toBe(3);
    expect(await count(metrics, "upstreamPathSwitches", { to: "tailnet" })).toBe(1);
    // A closed port on the box (a preview whose dev server is down) fails, but the path stays known.
    const closed = await listen(TAILNET);
    await closed.close();
    await expect(upstream.connect(b, closed.port)).rejects.toThrow(/^box unreachable$/);
    expect(upstream.currentPath(b.id)).toBe("tailnet");
    const target = await upstream.connectTarget(b, tailnet.port);
    expect(target).toEqual({
      host: TAILNET,
      port: tailnet.port,
      path: "tailnet",
      authority: `${TAILNET}:${tailnet.port}`,
    });
  });

  it("returns to the primary within the TTL once it answers again", async () => {
    const tailnet = await tailnetOnly();
    // A TTL the test never reaches: the path below comes back by a re-probe, not by being forgotten (a
    // forgotten path reads null, and only a new connection would pick the primary again).
    const { upstream, metrics } = resolver({ ttlMs: 10 * 60_000, reprobeMs: 100 });
    const b = box(tailnet.port);
    (await upstream.connect(b, tailnet.port)).socket.destroy();
    expect(upstream.currentPath(b.id)).toBe("tailnet");

    const primary = await listen(PUBLIC, tailnet.port);
    opened.push(primary);
    await waitFor("the primary path", () => upstream.currentPath(b.id) === "public");
    const { socket, path } = await upstream.connect(b, tailnet.port);
    socket.destroy();
    expect(path).toBe("public");
    await waitFor("traffic on the primary", () => primary.accepted.length >= 2); // re-probe + connection
    expect(await count(metrics, "upstreamReprobes", { result: "ok" })).toBe(1);
    expect(await count(metrics, "upstreamPathSwitches", { to: "public" })).toBe(1);
  });

  it("forgets a path nobody used for the TTL, and stops re-probing", async () => {
    const tailnet = await tailnetOnly();
    const { upstream, metrics } = resolver({ ttlMs: 400, reprobeMs: 100 });
    const b = box(tailnet.port);
    (await upstream.connect(b, tailnet.port)).socket.destroy();
    await waitFor("the path to be forgotten", () => upstream.currentPath(b.id) === null);
    const probes = await count(metrics, "upstreamReprobes");
    // A witness on the same re-probe period that stays in use: three of its re-probes are three periods in
    // which the forgotten box's re-probing, had it not stopped, would have run too.
    const witness = resolver({ ttlMs: 10 * 60_000, reprobeMs: 100 });
    (await witness.upstream.connect(box(tailnet.port), tailnet.port)).socket.destroy();
    await waitFor(
      "three re-probes of the witness",
      async () => (await count(witness.metrics, "upstreamReprobes")) >= 3,
    );
    expect(await count(metrics, "upstreamReprobes")).toBe(probes);
  });

  it("starts over when the instance's addresses change", async () => {
    const tailnet = await tailnetOnly();
    const primary = await listen(PUBLIC, tailnet.port);
    opened.push(primary);
    const { upstream } = resolver();
    const b = box(tailnet.port, { publicIp: "127.0.0.3" }); // nothing there: fallback
    expect((await upstream.connect(b, tailnet.port)).path).toBe("tailnet");
    const moved = { ...b, publicIp: PUBLIC }; // e.g. the reconciler fixed IP drift
    const { socket, path } = await upstream.connect(moved, tailnet.port);
    socket.destroy();
    expect(path).toBe("public");
  });

  it("says 'box unreachable', without an address, when both paths are down", async () => {
    const probe = await listen(TAILNET);
    const port = probe.port;
    await probe.close(); // a port nothing listens on, on either address
    const { upstream, metrics } = resolver();
    const b = box(port);
    const err = await upstream.connect(b, port).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BoxUnreachableError);
    const e = err as BoxUnreachableError;
    expect(e.message).toBe("box unreachable");
    expect(e.attempts).toEqual([
      { path: "public", result: "refused" },
      { path: "tailnet", result: "refused" },
    ]);
    for (const text of [String(e), e.stack ?? "", JSON.stringify(e), JSON.stringify(e.attempts)]) {
      expect(text).not.toContain("127.0.0");
      expect(text).not.toContain(String(port));
    }
    expect(await count(metrics, "upstreamUnreachable")).toBe(1);
    expect(upstream.currentPath(b.id)).toBeNull();
    await expect(upstream.connectTarget(b, port)).rejects.toThrow(/^box unreachable$/);
  });

  it("gives up on a path that drops connection attempts after the connect timeout", async (ctx) => {
    // A listener whose accept queue is full drops further SYNs, like a firewall: Node always accepts, so a
    // python socket that never calls accept() plays it.
    let python = "";
    try {
      python = execFileSync("sh", ["-c", "command -v python3"], { encoding: "utf8" }).trim();
    } catch {
      ctx.skip();
    }
    const child = spawn(python, [
      "-c",
      `import socket,sys,time
s=socket.socket(); s.bind(("${PUBLIC}",0)); s.listen(0)
print(s.getsockname()[1], flush=True); time.sleep(60)`,
    ]);
    opened.push({ close: () => child.kill("SIGKILL") });
    const port = Number(
      await new Promise<string>((resolve) => child.stdout.once("data", (d: Buffer) => resolve(String(d)))),
    );
    const fillers: Socket[] = [];
    const { createConnection } = await import("node:net");
    // Fill the accept queue (backlog 0 holds one or two): later connection attempts hang.
    for (let i = 0; i < 3; i++) {
      const s = createConnection({ host: PUBLIC, port });
      s.on("error", () => {});
      fillers.push(s);
    }
    opened.push({ close: () => fillers.forEach((s) => void s.destroy()) });
    // The first one is in the queue (handshake done): the queue is full, and further SYNs are dropped.
    await new Promise((resolve, reject) => {
      fillers[0]!.once("connect", resolve);
      fillers[0]!.once("error", reject);
    });
    const tailnet = await listen(TAILNET, port);
    opened.push(tailnet);

    const { upstream, metrics } = resolver({ connectTimeoutMs: 300 });
    const { socket, path } = await upstream.connect(box(port), port);
    socket.destroy();
    expect(path).toBe("tailnet");
    // It gave up on the public path by its timeout, not because the attempt was refused.
    expect(await count(metrics, "upstreamConnections", { path: "public", result: "timeout" })).toBe(1);
    expect(await count(metrics, "upstreamConnections", { path: "public", result: "refused" })).toBe(0);
  });

  it("never dials an address the policy refuses", async () => {
    const tailnet = await tailnetOnly();
    const { upstream } = resolver({ allowAddress: addressPolicy({ allowLoopback: false }) });
    const b = box(tailnet.port, { publicIp: "169.254.169.254" });
    const err = (await upstream.connect(b, tailnet.port).catch((e: unknown) => e)) as BoxUnreachableError;
    expect(err).toBeInstanceOf(BoxUnreachableError);
    expect(err.attempts).toEqual([]);
    expect(tailnet.accepted).toHaveLength(0);

    const policy = addressPolicy({ allowLoopback: false });
    expect(policy("tailnet", "100.101.102.103")).toBe(true);
    expect(policy("tailnet", "fd7a:115c:a1e0::1")).toBe(true);
    expect(policy("tailnet", "10.0.0.5")).toBe(false);
    expect(policy("tailnet", "127.0.0.1")).toBe(false);
    expect(policy("public", "203.0.113.7")).toBe(true);
    expect(policy("public", "localhost")).toBe(false);
    expect(policy("public", "::1")).toBe(false);
    expect(addressPolicy({ allowLoopback: true })("tailnet", "127.0.0.2")).toBe(true);
  });

  it("plugs into http.request and ws as their createConnection", async () => {
    const http = await import("node:http");
    const server = http.createServer((_req, res) => res.end("from the box"));
    const wss = new WebSocketServer({ server, handleProtocols: () => "tty" });
    const tailnet = await listen(TAILNET, 0, server);
    opened.push(tailnet);
    const { upstream } = resolver();
    const b = box(tailnet.port);

    const paths: string[] = [];
    const body = await new Promise<string>((resolve, reject) => {
      const req = request(
        {
          host: "box", // only the Host header: the socket comes from the resolver
          path: "/",
          createConnection: upstream.createConnection(b, tailnet.port, { onPath: (p) => paths.push(p) }),
        },
        (res) => {
          let text = "";
          res.on("data", (d) => {
            text += d;
          });
          res.on("end", () => resolve(text));
        },
      );
      req.on("error", reject);
      req.end();
    });
    expect(body).toBe("from the box");

    const ws = new WebSocket("ws://box/ws", ["tty"], {
      createConnection: forWebSocket(
        upstream.createConnection(b, tailnet.port, { onPath: (p) => paths.push(p) }),
      ),
    });
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    expect(ws.protocol).toBe("tty");
    ws.close();
    expect(paths).toEqual(["tailnet", "tailnet"]);
    wss.close();

    await tailnet.close();
    const failed = new WebSocket("ws://box/ws", ["tty"], {
      createConnection: forWebSocket(upstream.createConnection(b, tailnet.port)),
    });
    const error = await new Promise<Error>((resolve) => failed.once("error", resolve));
    expect(error.message).toBe("box unreachable");
  });
});

describe("UpstreamResolver with the tailnet first (BERTH_BOX_PATHS=tailnet,public)", () => {
  const tailnetFirst = { pathOrder: ["tailnet", "public"] as const };

  it("dials the tailnet without touching the public address", async () => {
    const tailnet = await tailnetOnly();
    const pub = await listen(PUBLIC, tailnet.port);
    opened.push(pub);
    const { upstream, metrics } = resolver(tailnetFirst);
    const { socket, path } = await upstream.connect(box(tailnet.port), tailnet.port);
    socket.destroy();
    expect(path).toBe("tailnet");
    await waitFor("the tailnet listener to accept", () => tailnet.accepted.length === 1);
    expect(pub.accepted).toHaveLength(0);
    expect(await count(metrics, "upstreamPathSwitches")).toBe(0);
  });

  it("falls back to public while the tailnet is down and returns to it once it answers", async () => {
    const pub = await listen(PUBLIC);
    opened.push(pub);
    // A TTL the test never reaches: back on the tailnet by a re-probe, not by forgetting.
    const { upstream, metrics } = resolver({ ...tailnetFirst, ttlMs: 10 * 60_000, reprobeMs: 100 });
    const b = box(pub.port);
    const first = await upstream.connect(b, pub.port);
    first.socket.destroy();
    expect(first.path).toBe("public");
    expect(upstream.currentPath(b.id)).toBe("public");
    expect(await count(metrics, "upstreamPathSwitches", { to: "public" })).toBe(1);
    const tailnet = await listen(TAILNET, pub.port);
    opened.push(tailnet);
    await waitFor("the primary (tailnet) path", () => upstream.currentPath(b.id) === "tailnet");
    const again = await upstream.connect(b, pub.port);
    again.socket.destroy();
    expect(again.path).toBe("tailnet");
  });

  it("never dials the public address when the tailnet is the only path", async () => {
    const pub = await listen(PUBLIC);
    opened.push(pub);
    const { upstream } = resolver({ pathOrder: ["tailnet"] });
    await expect(upstream.connect(box(pub.port), pub.port)).rejects.toThrow(/^box unreachable$/);
    expect(pub.accepted).toHaveLength(0);
  });

  it("refuses an order that names a path twice or none", () => {
    expect(() => resolver({ pathOrder: [] })).toThrow(RangeError);
    expect(() => resolver({ pathOrder: ["public", "public"] })).toThrow(RangeError);
  });
});
