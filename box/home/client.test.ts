import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LIMITS } from "../protocol.ts";
import {
  AgentAuthError,
  AgentRequestRejectedError,
  ControlPlaneClient,
  ControlPlaneUnavailableError,
} from "./client.ts";

let server: Server;
let url: string;
let reply: { status: number; body: string } = { status: 200, body: "{}" };
let seen: { headers: Record<string, string | string[] | undefined>; body: string }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      seen.push({ headers: req.headers, body });
      res.writeHead(reply.status, { "content-type": "application/json" });
      res.end(reply.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(() => new Promise((r) => server.close(r)));

const hb = {
  lifecycle: "ready" as const,
  agentVersion: "1.0.0",
  uptimeSeconds: 1,
  startedAt: "2026-11-23T21:00:00.000Z",
  lastError: null,
  metrics: {},
};
const failure = (p: Promise<unknown>): Promise<Error> =>
  p.then(
    () => {
      throw new Error("expected a failure");
    },
    (e: Error) => e,
  );
const client = () => new ControlPlaneClient({ baseUrl: url, token: "tok-secret-123", timeoutMs: 1000 });

describe("ControlPlaneClient", () => {
  it("posts to the versioned path with the bearer token and a traceparent", async () => {
    seen = [];
    reply = { status: 200, body: JSON.stringify({ eventsAckedThrough: 0 }) };
    expect(await client().heartbeat(hb)).toMatchObject({ eventsAckedThrough: 0, sendKeys: [] });
    expect(seen[0]!.headers.authorization).toBe("Bearer tok-secret-123");
    expect(seen[0]!.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(JSON.parse(seen[0]!.body)).toMatchObject({ lifecycle: "ready", completed: [] });
  });

  it("maps statuses to errors the loop can act on, never echoing the token", async () => {
    reply = { status: 401, body: JSON.stringify({ error: { code: "unauthorized", message: "revoked" } }) };
    const auth = await failure(client().heartbeat(hb));
    expect(auth).toBeInstanceOf(AgentAuthError);
    expect(auth.message).not.toContain("tok-secret-123");

    reply = {
      status: 413,
      body: JSON.stringify({ error: { code: "too_large", message: "body over 1 MiB" } }),
    };
    const big = await failure(client().heartbeat(hb));
    expect(big).toBeInstanceOf(AgentRequestRejectedError);
    expect(big.message).toBe("control plane rejected the request (HTTP 413 too_large): body over 1 MiB");

    reply = { status: 503, body: "" };
    expect(
      await client()
        .heartbeat(hb)
        .catch((e: Error) => e),
    ).toBeInstanceOf(ControlPlaneUnavailableError);
  });

  it("refuses a response that breaks the contract, naming the field", async () => {
    reply = { status: 200, body: JSON.stringify({ eventsAckedThrough: -1, sessions: ["Bad Name"] }) };
    await expect(client().heartbeat(hb)).rejects.toThrow(
      /response does not match the agent API v1: sessions\.0: session name must match .*eventsAckedThrough/,
    );
    reply = { status: 200, body: "<html>" };
    await expect(client().heartbeat(hb)).rejects.toThrow(/response is not JSON/);
  });

  it("refuses to send an oversized or invalid request, before it leaves", async () => {
    seen = [];
    const long = "x".repeat(LIMITS.maxLogMessage + 1);
    await expect(
      client().sendEvents({
        events: [
          { seq: 1, at: hb.startedAt, type: "log", payload: { level: "info", msg: long, fields: {} } },
        ],
      }),
    ).rejects.toThrow(
      /invalid \/agent\/v1\/events request: events\.0\.payload\.msg: must be at most 4096 characters/,
    );
    expect(seen).toHaveLength(0);
  });

  it("reports an unreachable control plane as unavailable", async () => {
    const c = new ControlPlaneClient({ baseUrl: "http://127.0.0.1:9", token: "t", timeoutMs: 500 });
    await expect(c.heartbeat(hb)).rejects.toBeInstanceOf(ControlPlaneUnavailableError);
  });
});
