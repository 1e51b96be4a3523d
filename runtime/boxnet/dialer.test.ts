import { createServer, request } from "node:http";
import type { Socket } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../platform/logger.ts";
import { createMetrics } from "../platform/metrics.ts";
import { addressPolicy } from "./address-policy.ts";
import { UpstreamAgent } from "./dialer.ts";
import { UpstreamResolver } from "./path-resolver.ts";

describe("UpstreamAgent", async () => {
  // The box answers on its tailnet address only; the public one (127.0.0.1, same port) refuses.
  const connections: Socket[] = [];
  const server = createServer((req, res) => res.end(`hello ${req.headers.host}`));
  server.on("connection", (s: Socket) => connections.push(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.2", r));
  const port = (server.address() as { port: number }).port;
  const metrics = createMetrics();
  const resolver = new UpstreamResolver({
    metrics,
    log: createLogger("silent"),
    allowAddress: addressPolicy({ allowLoopback: true }),
  });
  const agent = new UpstreamAgent(resolver, { keepAlive: true });
  afterAll(() => {
    agent.destroy();
    resolver.close();
    server.closeAllConnections();
    server.close();
  });
  const box = { id: "3f0c2a56-0000-4000-8000-000000000001", publicIp: "127.0.0.1", tailnetIp: "127.0.0.2" };

  const get = (target: { host: string; port: number }, headers: Record<string, string> = {}) =>
    new Promise<string>((resolve, reject) => {
      const req = request({ ...target, agent, path: "/", headers }, (res) => {
        let body = "";
        res.on("data", (d) => {
          body += d;
        });
        res.on("end", () => resolve(body));
      });
      req.on("error", reject);
      req.end();
    });

  it("dials through the resolver and keeps the connection alive per box", async () => {
    expect(await get(agent.target(box, port), { host: "preview.example" })).toBe("hello preview.example");
    expect(await get(agent.target(box, port), { host: "preview.example" })).toBe("hello preview.example");
    expect(connections).toHaveLength(1);
    expect(resolver.currentPath(box.id)).toBe("tailnet");
  });

  it("refuses a host it was not given through target(), and a box with no path, as 'box unreachable'", async () => {
    await expect(get({ host: "127.0.0.2", port })).rejects.toThrow(/^box unreachable$/);
    const dead = { ...box, id: "3f0c2a56-0000-4000-8000-000000000002", tailnetIp: "127.0.0.3" };
    await expect(get(agent.target(dead, port))).rejects.toThrow(/^box unreachable$/);
  });
});
