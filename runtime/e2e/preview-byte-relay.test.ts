/**
 * The preview byte relay inside a control plane: what holds for a browser's keep-alive connection. Its
 * later requests reuse the first one's admission (byte-relay.ts, gateway.ts#relayAdmit), so these tests
 * check that the decision is taken again whenever what it rests on changes: a revoked share link or a
 * deleted preview refuses the very next request on the same connection, a new connection to a local box is
 * checked for its listener again, and a request the relay does not forward (a POST, an upgrade) is answered
 * by node:http on the same connection.
 */
import { type Agent, Agent as HttpAgent, request as httpRequest } from "node:http";
import { afterAll, describe, expect, it } from "vitest";
import { createLoopbackWorkspace, json, startTestControlPlane } from "../test/control-plane.ts";
import { type DevServer, startDevServer } from "../test/dev-server.ts";
import { waitFor } from "../test/wait.ts";

const DOMAIN = "preview.localhost";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** Whether the request went out on a connection the agent had used before. */
  reused: boolean;
}

/** One request through `agent` (keepAlive, one socket): consecutive calls share a connection. */
function send(
  agent: Agent,
  port: string,
  path: string,
  headers: Record<string, string>,
  options: { method?: string; body?: Buffer } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: "127.0.0.1", port, path, headers, agent, method: options.method ?? "GET" },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
            reused: req.reusedSocket,
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

describe("the preview byte relay on a keep-alive connection", async () => {
  const cp = await startTestControlPlane({ BERTH_PREVIEW_DOMAIN: DOMAIN });
  const devServers: DevServer[] = [];
  afterAll(() => Promise.all(devServers.map((d) => d.close())));
  const token = cp.localToken;
  const port = new URL(cp.url).port;

  const workspaceId = await createLoopbackWorkspace(cp);

  /** A preview of a dev server of its own (declaring a port twice answers the existing preview). */
  async function preview(): Promise<{ id: string; host: string; dev: DevServer }> {
    const dev = await startDevServer();
    devServers.push(dev);
    const res = await cp.api(`/api/v1/workspaces/${workspaceId}/previews`, {
      method: "POST",
      token,
      json: { port: dev.port },
    });
    expect(res.status).toBe(201);
    const id: string = (await json(res)).preview.id;
    return { id, host: `${id}.${DOMAIN}:${port}`, dev };
  }

  /** The host cookie, through a share link (a visitor) or a one-time code (the owner). */
  async function cookieFor(id: string, host: string, by: "link" | "owner"): Promise<string> {
    const minted =
      by === "link"
        ? await cp.api(`/api/v1/previews/${id}/share`, { method: "POST", token, json: { ttlSeconds: 3600 } })
        : await cp.api(`/api/v1/previews/${id}/open`, { method: "POST", token, json: {} });
    const u = new URL((await json(minted)).url);
    const agent = new HttpAgent();
    const visit = await send(agent, port, `${u.pathname}${u.search}`, { host });
    agent.destroy();
    expect(visit.status).toBe(303);
    return String(visit.headers["set-cookie"]).split(";", 1)[0]!;
  }

  it("ends the sign-in's connection, so the page it leads to comes over a new one the relay takes", async () => {
    const { id, host } = await preview();
    const opened = await cp.api(`/api/v1/previews/${id}/open`, { method: "POST", token, json: {} });
    const u = new URL((await json(opened)).url);
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    try {
      const visit = await send(agent, port, `${u.pathname}${u.search}`, { host });
      expect(visit).toMatchObject({ status: 303, headers: { connection: "close" } });
      const cookie = String(visit.headers["set-cookie"]).split(";", 1)[0]!;
      const page = await send(agent, port, "/small", { host, cookie });
      expect(page).toMatchObject({ status: 200, reused: false });
      // node:http names `connection: keep-alive` in its responses; the relay's keep-alive responses don't.
      expect(page.headers.connection).toBeUndefined();
      expect(await send(agent, port, "/small", { host, cookie })).toMatchObject({
        status: 200,
        reused: true,
      });
    } finally {
      agent.destroy();
    }
  });

  it("refuses the next request on the same connection once the share link is revoked", async () => {
    const { id, host } = await preview();
    const cookie = await cookieFor(id, host, "link");
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    try {
      expect((await send(agent, port, "/small", { host, cookie })).status).toBe(200);
      const second = await send(agent, port, "/small", { host, cookie });
      expect(second).toMatchObject({ status: 200, reused: true });
      expect((await cp.api(`/api/v1/previews/${id}/share`, { method: "DELETE", token })).status).toBe(204);
      // The NOTIFY replaces the cached route; from then on the reused decision no longer applies.
      const refused = await waitFor("the revoke on the open connection", async () => {
        const r = await send(agent, port, "/small", { host, cookie });
        return r.status === 401 ? r : null;
      });
      expect(refused.reused).toBe(true);
      expect(refused.body).toContain("Open this preview from Berth");
    } finally {
      agent.destroy();
    }
  });

  it("refuses the next request on the same connection once the preview is closed", async () => {
    const { id, host } = await preview();
    const cookie = await cookieFor(id, host, "owner");
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    try {
      expect((await send(agent, port, "/small", { host, cookie })).status).toBe(200);
      expect(
        (await cp.api(`/api/v1/workspaces/${workspaceId}/previews/${id}`, { method: "DELETE", token }))
          .status,
      ).toBe(204);
      const refused = await waitFor("the closed preview on the open connection", async () => {
        const r = await send(agent, port, "/small", { host, cookie });
        return r.status === 401 ? r : null;
      });
      expect(refused.reused).toBe(true);
    } finally {
      agent.destroy();
    }
  });

  it("checks a local box's listener again before each new connection to it", async () => {
    const { id, host, dev } = await preview();
    const cookie = await cookieFor(id, host, "owner");
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    try {
      expect((await send(agent, port, "/small", { host, cookie })).status).toBe(200);
      // Another process takes the port: the relay's pooled connection to the old one is gone, and the
      // connection it must open now leads to a listener that is not the workspace's.
      cp.driver.listenerOwner = async () => "other";
      dev.server.closeIdleConnections();
      const hits = dev.hits;
      const refused = await waitFor("the listener check on a new dial", async () => {
        const r = await send(agent, port, "/small", { host, cookie });
        return r.status === 403 ? r : null;
      });
      expect(refused.reused).toBe(true);
      expect(refused.body).toContain("A process outside this workspace listens on this port");
      expect(dev.hits).toBe(hits);
    } finally {
      cp.driver.listenerOwner = async () => "workspace";
      agent.destroy();
    }
  });

  it("hands a POST after relayed GETs to node:http on the same connection, body intact", async () => {
    const { id, host } = await preview();
    const cookie = await cookieFor(id, host, "owner");
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    try {
      expect((await send(agent, port, "/small", { host, cookie })).status).toBe(200);
      const body = Buffer.alloc(200_000, "x");
      const posted = await send(
        agent,
        port,
        "/echo",
        { host, cookie, "content-type": "text/plain" },
        {
          method: "POST",
          body,
        },
      );
      expect(posted).toMatchObject({ status: 200, reused: true });
      const seen = JSON.parse(posted.body);
      expect(seen).toMatchObject({ method: "POST", url: "/echo", bodyBytes: body.length });
      expect(seen.headers.cookie).toBeUndefined();
      // node:http owns the connection now, and still serves the preview's GETs on it.
      expect(await send(agent, port, "/small", { host, cookie })).toMatchObject({
        status: 200,
        reused: true,
      });
    } finally {
      agent.destroy();
    }
  });

  it("counts relayed requests in the request metrics", async () => {
    const text = await (await cp.api("/metrics")).text();
    expect(text).toMatch(
      /http_request_duration_seconds_count\{method="GET",route="preview:host",status="200"\} [1-9]/,
    );
  });
});
