/**
 * The OpenAPI document against the routers and against real answers: every `/api/v1` route carries a
 * `doc(...)` and appears in the served document, nothing is documented that the server does not route, and
 * the answers of a representative session (a workspace's whole lifecycle, its build log, errors) validate
 * against the document's response schemas with an independent validator.
 */
import { request } from "node:http";
import { describe, expect, it } from "vitest";
import { listRoutes, openApiPath } from "../api/openapi/document.ts";
import { buildApp } from "../app/http-app.ts";
import { createLogger } from "../platform/logger.ts";
import { agentChecksIn } from "../test/agent.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { ApiContract, checkedFetch } from "../test/openapi.ts";
import { waitFor } from "../test/wait.ts";

const ANY_UUID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";

/** Parses an SSE body into events until `end` (or the stream closes). */
async function readSse(res: Response): Promise<{ event: string; data: unknown }[]> {
  const events: { event: string; data: unknown }[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let at = buffer.indexOf("\n\n");
    while (at >= 0) {
      const frame = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      const event = /^event: (.*)$/m.exec(frame)?.[1];
      const data = /^data: (.*)$/m.exec(frame)?.[1];
      if (event && data) events.push({ event, data: JSON.parse(data) });
      if (event === "end") return events;
      at = buffer.indexOf("\n\n");
    }
  }
  return events;
}

describe("the OpenAPI document", async () => {
  const cp = await startTestControlPlane();
  cp.driver.afterStart = agentChecksIn(cp);
  const { publicRouter, apiRouter, agentRouter } = buildApp({ ...cp.deps, log: createLogger("silent") });
  const document = await json(await fetch(`${cp.url}/api/v1/openapi.json`));
  const contract = new ApiContract(document);

  it("documents every /api/v1 route, and nothing the routers do not have", () => {
    const routes = listRoutes([
      { router: publicRouter, auth: "public" },
      { router: apiRouter, auth: "user" },
    ]);
    expect(
      routes.filter((r) => !r.doc).map((r) => `${r.method} ${r.path}`),
      "routes without doc(...) next to them",
    ).toEqual([]);
    // The agent API is the boxes' (box/protocol.ts), not this document's: it must stay off /api/v1.
    expect(listRoutes([{ router: agentRouter, auth: "public" }])).toEqual([]);

    const documented = Object.entries(
      document.paths as Record<string, Record<string, { "x-websocket"?: unknown }>>,
    )
      .flatMap(([path, ops]) =>
        Object.entries(ops)
          .filter(([, op]) => !op["x-websocket"])
          .map(([method]) => `${method.toUpperCase()} ${path}`),
      )
      .sort();
    expect(documented).toEqual(routes.map((r) => `${r.method} ${openApiPath(r.path)}`).sort());
  });

  it("describes auth, the error shape, SSE and WebSocket endpoints", () => {
    expect(document.openapi).toMatch(/^3\.1\./);
    expect(Object.keys(document.components.securitySchemes).sort()).toEqual(["bearerAuth", "cookieAuth"]);
    expect(document.components.schemas.Error.required).toEqual(["error"]);
    const log = document.paths["/api/v1/builds/{id}/log"].get;
    expect(Object.keys(log.responses["200"].content)).toEqual(["text/event-stream"]);
    expect(Object.keys(log.responses["200"]["x-sse-events"]).sort()).toEqual(["end", "line"]);
    expect(document.paths["/api/v1/workspaces"].get.security).toEqual([
      { bearerAuth: [] },
      { cookieAuth: [] },
    ]);
    expect(document.paths["/api/v1/auth/config"].get.security).toEqual([]);
    const ids = Object.values(document.paths).flatMap((ops) =>
      Object.values(ops as Record<string, { operationId: string }>).map((op) => op.operationId),
    );
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("documents only WebSocket endpoints the server upgrades", async () => {
    const sockets = Object.entries(document.paths as Record<string, Record<string, Record<string, unknown>>>)
      .filter(([, ops]) => ops.get?.["x-websocket"])
      .map(([path]) => path);
    expect(sockets).toEqual(["/api/v1/sessions/{id}/terminal", "/api/v1/voice/stream"]);
    for (const path of [...sockets, "/api/v1/sessions/{id}/no-such-socket"]) {
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(`${cp.url}${path.replace(/\{\w+\}/g, ANY_UUID)}`, {
          headers: {
            Connection: "Upgrade",
            Upgrade: "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
          },
        });
        req.on("upgrade", (res, socket) => {
          socket.destroy();
          resolve(res.statusCode ?? 0);
        });
        req.on("response", (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
      // The relay refuses a missing Origin with 403; a path no upgrade handler owns is a 404.
      if (path.includes("no-such-socket")) expect(status).toBe(404);
      else expect(status).not.toBe(404);
    }
  });

  it("serves a docs page that needs nothing from the network", async () => {
    const res = await fetch(`${cp.url}/api/v1/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/text\/html/);
    const html = await res.text();
    expect(html).not.toMatch(/<script|src="http|href="http/);
    for (const path of Object.keys(document.paths)) expect(html).toContain(path);
  });

  it("matches what the API answers through a workspace's whole lifecycle", { timeout: 60_000 }, async () => {
    const api = checkedFetch(contract, cp.url, cp.localToken);
    await api("/api/v1/me");
    await api("/api/v1/overview");
    await api("/api/v1/auth/config");
    await api("/api/v1/notifications");
    await api(`/api/v1/workspaces/${ANY_UUID}`); // 404 in the error shape
    await api("/api/v1/workspaces", { method: "POST", json: { name: "" } }); // 400 naming the field
    const wrong = await fetch(`${cp.url}/api/v1/workspaces`, { headers: { authorization: "Bearer nope" } });
    expect(contract.check("GET", "/api/v1/workspaces", wrong.status, await wrong.json())).toEqual([]);

    const created = await json(
      await api("/api/v1/workspaces", { method: "POST", json: { name: "contract" } }),
    );
    const id = created.workspace.id;
    const log = await fetch(`${cp.url}/api/v1/builds/${created.build.id}/log`, {
      headers: { authorization: `Bearer ${cp.localToken}` },
    });
    const events = await readSse(log);
    expect(events.at(-1)).toEqual({ event: "end", data: { status: "succeeded" } });
    expect(events.filter((e) => e.event === "line").length).toBeGreaterThan(0);
    expect(
      events.flatMap((e) => contract.checkEvent(`/api/v1/builds/${created.build.id}/log`, e.event, e.data)),
    ).toEqual([]);

    await api("/api/v1/workspaces");
    await api(`/api/v1/workspaces/${id}`);
    await api(`/api/v1/workspaces/${id}/builds`);
    await api(`/api/v1/builds/${created.build.id}`);
    await api(`/api/v1/workspaces/${id}/sessions`);
    await api(`/api/v1/workspaces/${id}/previews`);
    const ready = () =>
      waitFor(
        "the workspace to be ready",
        async () => (await json(await api(`/api/v1/workspaces/${id}`))).workspace.state === "ready",
      );
    await ready();
    await api(`/api/v1/workspaces/${id}/hibernate`, { method: "POST" });
    await waitFor(
      "hibernated",
      async () => (await json(await api(`/api/v1/workspaces/${id}`))).workspace.state === "hibernated",
    );
    await api(`/api/v1/workspaces/${id}/wake`, { method: "POST" });
    await ready();
    await api(`/api/v1/workspaces/${id}`, { method: "DELETE" });
    expect(contract.covered.size).toBeGreaterThanOrEqual(14);
  });
});
