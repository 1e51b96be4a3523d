/**
 * Bodies the parser cannot read are the client's fault: a 4xx naming the problem, never a 500, and never a
 * connection left holding the unread rest of a body.
 */
import { connect } from "node:net";
import { brotliCompressSync, gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { json, startTestControlPlane } from "../test/control-plane.ts";

describe("request bodies the API cannot read", async () => {
  const cp = await startTestControlPlane();
  const { port } = new URL(cp.url);
  const routes = [
    { path: "/api/v1/auth/login", token: undefined }, // public
    { path: "/api/v1/workspaces", token: cp.localToken }, // a signed-in user's
    { path: "/agent/v1/heartbeat", token: "not-an-agent-token" }, // the agents'
  ];

  it.each(["gzip", "deflate", "br"])(
    "answers 400 for a body that is not %s as it claims",
    async (encoding) => {
      for (const { path, token } of routes) {
        const res = await cp.api(path, {
          method: "POST",
          token,
          headers: { "Content-Type": "application/json", "Content-Encoding": encoding },
          body: '{"name":"plain text, not compressed"}',
        });
        expect(res.status, path).toBe(400);
        expect((await json(res)).error.code, path).toBe("invalid_body_encoding");
      }
    },
  );

  it("reads a body that is compressed as it claims", async () => {
    const body = JSON.stringify({ token: "wrong" });
    for (const [encoding, bytes] of [
      ["gzip", gzipSync(body)],
      ["br", brotliCompressSync(body)],
    ] as const) {
      const res = await cp.api("/api/v1/auth/login", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Content-Encoding": encoding },
        body: bytes,
      });
      expect(res.status, encoding).toBe(401); // parsed, then refused for the wrong token
    }
  });

  it("answers 415 for an encoding it does not speak", async () => {
    const res = await cp.api("/api/v1/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Content-Encoding": "compress" },
      body: "{}",
    });
    expect(res.status).toBe(415);
    expect((await json(res)).error.code).toBe("unsupported_content_encoding");
  });

  it("closes the connection after a 413 instead of leaving the rest of the body on it", async () => {
    const socket = connect(Number(port), "127.0.0.1");
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    let received = "";
    socket.on("data", (d) => (received += d));
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    const size = 2 * 1024 * 1024;
    socket.write(
      `POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
        `Connection: keep-alive\r\nContent-Length: ${size}\r\n\r\n{"token":"`,
    );
    await closed; // the server ends the connection itself, with the rest of the body never sent
    expect(received).toMatch(/^HTTP\/1\.1 413 /);
    expect(received.toLowerCase()).toContain("connection: close");
    expect(received).toContain('"code":"body_too_large"');
  });
});
