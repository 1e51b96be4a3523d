/**
 * The preview proxy end to end: a real control plane, real Postgres, and a real dev server (HTTP and a
 * WebSocket echo) on 127.0.0.1, which stands for the box (the open instance's public_ip is set to it).
 */

import { once } from "node:events";
import { request } from "node:http";
import { connect } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { upgradeRequest } from "../../box/testing/half-open-upgrade.ts";
import { upsertUser } from "../domain/identity/actor.ts";
import type { Authenticator } from "../domain/identity/authenticate.ts";
import { PATH_FORM_SANDBOX } from "../gateway/preview/gateway.ts";
import { createLoopbackWorkspace, json, startTestControlPlane } from "../test/control-plane.ts";
import { MEGABYTE_BODY, startDevServer } from "../test/dev-server.ts";
import { waitFor } from "../test/wait.ts";

const DOMAIN = "preview.localhost";

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A request with exactly these headers (fetch cannot set Host), without connection reuse. */
function raw(
  base: string,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<Raw> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path,
        method: init.method ?? "GET",
        headers: init.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }),
        );
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

/** Sends a request line byte for byte (absolute-URI forms that no client library produces). */
function rawSocket(base: string, text: string): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname, () => s.write(text));
    let out = "";
    s.on("data", (d) => {
      out += d.toString();
      // The status line and headers are what the tests read: no need to wait for the server to hang up.
      if (out.includes("\r\n\r\n")) {
        s.destroy();
        resolve(out);
      }
    });
    s.on("end", () => resolve(out));
    s.on("close", () => resolve(out));
    s.on("error", reject);
  });
}

/** A client's (masked) WebSocket text frame of fewer than 126 bytes. */
function maskedText(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.of(0x12, 0x34, 0x56, 0x78);
  const frame = Buffer.concat([Buffer.of(0x81, 0x80 | payload.length), mask, payload]);
  for (let i = 0; i < payload.length; i++) frame[6 + i]! ^= mask[i % 4]!;
  return frame;
}

/** Holds the control plane's credential check until `letThrough()`; `admitting` turns true when one waits. */
function holdAdmission(cp: { deps: { authenticator: Pick<Authenticator, "resolve"> } }) {
  const resolve = cp.deps.authenticator.resolve.bind(cp.deps.authenticator);
  let letThrough!: () => void;
  const held = new Promise<void>((r) => {
    letThrough = r;
  });
  const state = {
    admitting: false,
    letThrough: () => letThrough(),
    restore: () => {
      cp.deps.authenticator.resolve = resolve;
    },
  };
  cp.deps.authenticator.resolve = async (input) => {
    state.admitting = true;
    await held;
    return resolve(input);
  };
  return state;
}

function openWs(url: string, headers: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once("open", () => resolve(ws));
    ws.once("unexpected-response", (_req, res) => reject(new Error(`status ${res.statusCode}`)));
    ws.once("error", reject);
  });
}

async function echoOnce(ws: WebSocket, text: string): Promise<string> {
  const reply = new Promise<string>((resolve) => ws.once("message", (d) => resolve(d.toString())));
  ws.send(text);
  return reply;
}

describe("preview proxy", async () => {
  const cp = await startTestControlPlane({ BERTH_PREVIEW_DOMAIN: DOMAIN });
  const dev = await startDevServer();
  afterAll(() => dev.close());
  const { pool } = cp.deps.database;
  const token = cp.localToken;
  const bearer = { authorization: `Bearer ${token}` };
  const cpPort = new URL(cp.url).port;

  // The box is this machine's loopback, where the dev server listens.
  const workspaceId = await createLoopbackWorkspace(cp);
  const declared = await cp.api(`/api/v1/workspaces/${workspaceId}/previews`, {
    method: "POST",
    token,
    json: { port: dev.port },
  });
  expect(declared.status).toBe(201);
  const previewId: string = (await json(declared)).preview.id;
  const prefix = `/api/v1/previews/${previewId}`;
  const previewHost = `${previewId}.${DOMAIN}:${cpPort}`;

  /** Signs into the preview's host through a one-time code; returns the cookie pair. */
  const hostCookie = async (): Promise<string> => {
    const opened = await json(
      await cp.api(`${prefix}/open`, { method: "POST", token, json: { path: "/echo?a=1" } }),
    );
    const u = new URL(opened.url);
    expect(u.host).toBe(previewHost);
    const res = await raw(cp.url, `${u.pathname}${u.search}`, { headers: { host: previewHost } });
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe("/echo?a=1");
    return String(res.headers["set-cookie"]).split(";", 1)[0]!;
  };

  describe("path form", () => {
    it("lists the declared preview and refuses ports outside the range", async () => {
      const list = await json(await cp.api(`/api/v1/workspaces/${workspaceId}/previews`, { token }));
      expect(list.previews).toMatchObject([
        { id: previewId, port: dev.port, source: "declared", share: "owner" },
      ]);
      for (const port of [80, 7681, 70000, 1023]) {
        const res = await cp.api(`/api/v1/workspaces/${workspaceId}/previews`, {
          method: "POST",
          token,
          json: { port },
        });
        expect(res.status).toBe(400);
        expect((await json(res)).error.field).toBe("port");
      }
    });

    it("proxies HTTP and forwards neither the API's credentials nor spoofed forwarding headers", async () => {
      await pool.query("UPDATE workspaces SET last_activity_at = NULL WHERE id = $1", [workspaceId]);
      const res = await raw(cp.url, `${prefix}/echo?x=1`, {
        headers: {
          ...bearer,
          host: `127.0.0.1:${cpPort}`,
          cookie: "berth_session=s3cret; app=keep; berth_preview=also-ours",
          "x-forwarded-for": "6.6.6.6",
          "x-forwarded-host": "evil.example",
          "proxy-authorization": "Basic eA==",
          connection: "keep-alive, x-drop-me",
          "x-drop-me": "1",
        },
      });
      expect(res.status).toBe(200);
      const seen = JSON.parse(res.body);
      expect(seen.url).toBe("/echo?x=1");
      expect(seen.headers.authorization).toBeUndefined();
      expect(seen.headers["proxy-authorization"]).toBeUndefined();
      expect(seen.headers["x-drop-me"]).toBeUndefined();
      expect(seen.headers.cookie).toBe("app=keep");
      expect(seen.headers["x-forwarded-for"]).toBe("127.0.0.1");
      expect(seen.headers["x-forwarded-host"]).toBe(`127.0.0.1:${cpPort}`);
      expect(seen.headers["x-forwarded-proto"]).toBe("http");
      expect(seen.headers["x-forwarded-prefix"]).toBe(prefix);
      // Not helmet's CSP, but a sandbox: on the API's origin the page must not act with the API's cookies.
      expect(res.headers["content-security-policy"]).toBe(PATH_FORM_SANDBOX);
      expect(PATH_FORM_SANDBOX).not.toContain("allow-same-origin");
      // Preview traffic is workspace activity (idle autostop reads it).
      await waitFor("preview traffic recorded as activity", async () => {
        const r = await pool.query("SELECT last_activity_at FROM workspaces WHERE id = $1", [workspaceId]);
        return r.rows[0].last_activity_at !== null;
      });
    });

    it("streams request and response bodies larger than the API's JSON limit", async () => {
      const upload = Buffer.alloc(5 * 1024 * 1024, 7);
      const res = await raw(cp.url, `${prefix}/upload`, {
        method: "POST",
        headers: { ...bearer, "content-type": "application/json" },
        body: upload,
      });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body).bodyBytes).toBe(upload.length);
      const big = await fetch(`${cp.url}${prefix}/mb`, { headers: bearer });
      expect(Buffer.from(await big.arrayBuffer()).equals(MEGABYTE_BODY)).toBe(true);
    });

    it("keeps redirects inside the preview and drops cookies that would overwrite the API session", async () => {
      const res = await raw(cp.url, `${prefix}/redirect`, { headers: bearer });
      expect(res.status).toBe(302);
      expect(res.headers.location).toBe(`${prefix}/landed`);
      expect(res.headers["set-cookie"]).toBeUndefined();
      const cookies = await raw(cp.url, `${prefix}/set-cookie`, { headers: bearer });
      expect(cookies.headers["set-cookie"]).toEqual(["app=1; Path=/"]);
    });

    it("proxies WebSockets (HMR) with the session cookie or a Bearer token", async () => {
      const session = await cp.deps.authenticator.sessionFor({
        userId: (await ownerId())!,
        externalId: "",
        isAdmin: false,
      });
      const viaCookie = await openWs(`ws://127.0.0.1:${cpPort}${prefix}/hmr`, {
        cookie: `berth_session=${session}`,
      });
      expect(await echoOnce(viaCookie, "ping")).toBe("ping");
      expect(dev.lastUpgradeHeaders?.cookie).toBeUndefined();
      viaCookie.close();
      const viaBearer = await openWs(`ws://127.0.0.1:${cpPort}${prefix}/`, bearer);
      expect(await echoOnce(viaBearer, "pong")).toBe("pong");
      expect(dev.lastUpgradeHeaders?.authorization).toBeUndefined();
      expect(dev.lastUpgradeHeaders?.["x-forwarded-proto"]).toBe("ws");
      viaBearer.close();
    });

    it("refuses anonymous requests (401) and someone else's preview (404), before any upstream request", async () => {
      const before = dev.hits;
      const anon = await raw(cp.url, `${prefix}/echo`);
      expect(anon.status).toBe(401);
      expect(JSON.parse(anon.body).error.code).toBe("unauthenticated");
      const bob = await upsertUser(cp.deps.store, "user_bob");
      const bobSession = await cp.deps.authenticator.sessionFor(bob);
      const foreign = await raw(cp.url, `${prefix}/echo`, {
        headers: { cookie: `berth_session=${bobSession}` },
      });
      expect(foreign.status).toBe(404);
      expect(JSON.parse(foreign.body).error.code).toBe("not_found");
      const bobShare = await raw(cp.url, `${prefix}/share`, {
        method: "POST",
        headers: { cookie: `berth_session=${bobSession}` },
      });
      expect(bobShare.status).toBe(404);
      const bobWs = openWs(`ws://127.0.0.1:${cpPort}${prefix}/`, { cookie: `berth_session=${bobSession}` });
      await expect(bobWs).rejects.toThrow("status 404");
      const malformed = await raw(cp.url, "/api/v1/previews/not-a-uuid/echo", { headers: bearer });
      expect(malformed.status).toBe(404);
      expect(dev.hits).toBe(before);
    });
  });

  describe("host form", () => {
    it("asks for sign-in without a cookie, and turns a one-time code into a host-only cookie", async () => {
      const before = dev.hits;
      const anon = await raw(cp.url, "/", { headers: { host: previewHost } });
      expect(anon.status).toBe(401);
      expect(anon.headers["content-type"]).toContain("text/html");
      expect(dev.hits).toBe(before);

      const opened = await json(await cp.api(`${prefix}/open`, { method: "POST", token, json: {} }));
      const u = new URL(opened.url);
      const first = await raw(cp.url, `${u.pathname}${u.search}`, { headers: { host: previewHost } });
      expect(first.status).toBe(303);
      const setCookie = String(first.headers["set-cookie"]);
      expect(setCookie).toMatch(/^berth_preview=[^;]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=\d+$/);
      expect(setCookie).not.toMatch(/Domain=/i);
      // The code works once.
      const replay = await raw(cp.url, `${u.pathname}${u.search}`, { headers: { host: previewHost } });
      expect(replay.status).toBe(401);
      // A code is bound to its preview: not redeemable on another preview's host.
      const other = await json(await cp.api(`${prefix}/open`, { method: "POST", token, json: {} }));
      const o = new URL(other.url);
      const elsewhere = `${"0".repeat(8)}-0000-4000-8000-${"0".repeat(12)}.${DOMAIN}`;
      expect((await raw(cp.url, `${o.pathname}${o.search}`, { headers: { host: elsewhere } })).status).toBe(
        401,
      );

      const cookie = setCookie.split(";", 1)[0]!;
      const res = await raw(cp.url, "/echo?y=2", {
        headers: { host: previewHost, cookie: `${cookie}; theme=dark`, authorization: "Bearer api-token" },
      });
      expect(res.status).toBe(200);
      const seen = JSON.parse(res.body);
      expect(seen.url).toBe("/echo?y=2");
      expect(seen.headers.cookie).toBe("theme=dark");
      expect(seen.headers.authorization).toBeUndefined();
      expect(seen.headers.host).toBe(previewHost);
      expect(seen.headers["x-forwarded-prefix"]).toBeUndefined();
    });

    it("proxies WebSockets on the preview's host and refuses a foreign Origin", async () => {
      const cookie = await hostCookie();
      const ws = await openWs(`ws://127.0.0.1:${cpPort}/hmr`, {
        host: previewHost,
        cookie,
        origin: `http://${previewHost}`,
      });
      expect(await echoOnce(ws, "hmr-update")).toBe("hmr-update");
      ws.close();
      const before = dev.hits;
      await expect(
        openWs(`ws://127.0.0.1:${cpPort}/hmr`, { host: previewHost, cookie, origin: "http://evil.example" }),
      ).rejects.toThrow("status 403");
      await expect(openWs(`ws://127.0.0.1:${cpPort}/hmr`, { host: previewHost })).rejects.toThrow(
        "status 401",
      );
      expect(dev.hits).toBe(before);
    });

    it("never lets a preview host reach the API", async () => {
      const cookie = await hostCookie();
      const res = await raw(cp.url, "/api/v1/workspaces", {
        headers: { host: previewHost, cookie, ...bearer },
      });
      // Forwarded to the dev server as its own path, not answered by the API.
      expect(JSON.parse(res.body).url).toBe("/api/v1/workspaces");
      const bare = await raw(cp.url, "/api/v1/workspaces", { headers: { host: DOMAIN, ...bearer } });
      expect(bare.status).toBe(404);
      expect(bare.headers["content-type"]).toContain("text/html");
    });
  });

  describe("link sharing", () => {
    it("works by link until revoked, on this replica and on another one at once", async () => {
      const other = await startTestControlPlane({
        BERTH_PREVIEW_DOMAIN: DOMAIN,
        DATABASE_URL: cp.deps.database.url,
      });
      const otherPort = new URL(other.url).port;
      const otherHost = `${previewId}.${DOMAIN}:${otherPort}`;
      const shared = await cp.api(`${prefix}/share`, { method: "POST", token, json: { ttlSeconds: 3600 } });
      expect(shared.status).toBe(201);
      const link = new URL((await json(shared)).url);
      expect(link.pathname).toBe("/__berth/link");

      // A visitor without any Berth account: the link becomes a cookie on the preview's host.
      const visit = await raw(cp.url, `${link.pathname}${link.search}`, { headers: { host: previewHost } });
      expect(visit.status).toBe(303);
      const cookie = String(visit.headers["set-cookie"]).split(";", 1)[0]!;
      expect((await raw(cp.url, "/small", { headers: { host: previewHost, cookie } })).status).toBe(200);
      // The other replica honours the same link (same keys, same database).
      const visit2 = await raw(other.url, `${link.pathname}${link.search}`, { headers: { host: otherHost } });
      const cookie2 = String(visit2.headers["set-cookie"]).split(";", 1)[0]!;
      expect((await raw(other.url, "/small", { headers: { host: otherHost, cookie: cookie2 } })).status).toBe(
        200,
      );

      const audit = await pool.query("SELECT action FROM audit_log WHERE target_id = $1 ORDER BY id", [
        previewId,
      ]);
      expect(audit.rows.map((r) => r.action)).toEqual(["preview.share"]);

      expect((await cp.api(`${prefix}/share`, { method: "DELETE", token })).status).toBe(204);
      // NOTIFY drops both replicas' cached routes; no TTL wait. (The routes were loaded moments ago and the
      // cache keeps them 30 s: revoked within 10 s means the notification did it, with room for a busy machine.)
      await waitFor(
        "revoke on this replica",
        async () => (await raw(cp.url, "/small", { headers: { host: previewHost, cookie } })).status === 401,
        10_000,
      );
      await waitFor(
        "revoke on the other replica",
        async () =>
          (await raw(other.url, "/small", { headers: { host: otherHost, cookie: cookie2 } })).status === 401,
        10_000,
      );
      const again = await raw(cp.url, `${link.pathname}${link.search}`, { headers: { host: previewHost } });
      expect(again.status).toBe(401);
      // Sharing again mints a new version: the old link stays dead, even once the new one works here.
      const reshared = new URL(
        (await json(await cp.api(`${prefix}/share`, { method: "POST", token, json: {} }))).url,
      );
      await waitFor(
        "the new link on this replica",
        async () =>
          (await raw(cp.url, `${reshared.pathname}${reshared.search}`, { headers: { host: previewHost } }))
            .status === 303,
      );
      expect(
        (await raw(cp.url, `${link.pathname}${link.search}`, { headers: { host: previewHost } })).status,
      ).toBe(401);
      await cp.api(`${prefix}/share`, { method: "DELETE", token });
      await other.close();
    });
    it("ends a link's cookie no later than the link itself", async () => {
      const shared = await json(
        await cp.api(`${prefix}/share`, { method: "POST", token, json: { ttlSeconds: 60 } }),
      );
      const link = new URL(shared.url);
      const visit = await raw(cp.url, `${link.pathname}${link.search}`, { headers: { host: previewHost } });
      expect(visit.status).toBe(303);
      const setCookie = String(visit.headers["set-cookie"]);
      const jwt = setCookie.split(";", 1)[0]!.split("=")[1]!;
      const claims = JSON.parse(Buffer.from(jwt.split(".")[1]!, "base64url").toString());
      // A 60 s link must not become a 12 h cookie: the viewer would keep the preview long after it expired.
      expect(claims.exp * 1000).toBeLessThanOrEqual(Date.parse(shared.expiresAt) + 1000);
      expect(Number(/Max-Age=(\d+)/.exec(setCookie)?.[1])).toBeLessThanOrEqual(60);
      await cp.api(`${prefix}/share`, { method: "DELETE", token });
    });

    it("redirects after sign-in only within the preview's host, whatever `next` hides", async () => {
      const shared = await json(await cp.api(`${prefix}/share`, { method: "POST", token, json: {} }));
      const link = new URL(shared.url);
      const origin = `http://${previewHost}`;
      // Browsers drop tabs and newlines from a URL before resolving it: "/\t/evil" is "//evil".
      for (const next of ["/\t/evil.example/x", "/\n/evil.example/x", "/\r\n/evil.example/x"]) {
        const res = await raw(cp.url, `${link.pathname}${link.search}&next=${encodeURIComponent(next)}`, {
          headers: { host: previewHost },
        });
        expect(res.status).toBe(303);
        expect(new URL(String(res.headers.location), origin).origin).toBe(origin);
      }
      await cp.api(`${prefix}/share`, { method: "DELETE", token });
    });
  });

  describe("SSRF and upstream safety", () => {
    it("refuses `..`, encoded dot segments and backslashes before any upstream request", async () => {
      const before = dev.hits;
      for (const path of [
        "/../../healthz",
        "/a/%2e%2e/b",
        "/%2E%2E%2Fx",
        "/a/..%2f..%2fb",
        "/a\\..\\b",
        "/%5c..%5cb",
        "//evil.example/x",
      ]) {
        const res = await raw(cp.url, `${prefix}${path}`, { headers: bearer });
        expect(res.status, path).toBe(400);
      }
      const cookie = await hostCookie();
      const hits = dev.hits;
      const res = await raw(cp.url, "/a/../../b", { headers: { host: previewHost, cookie } });
      expect(res.status).toBe(400);
      expect(dev.hits).toBe(hits);
      expect(before).toBeLessThanOrEqual(hits);
    });

    it("refuses absolute-URI request lines on both forms", async () => {
      const cookie = await hostCookie();
      const before = dev.hits;
      const hostForm = await rawSocket(
        cp.url,
        `GET http://127.0.0.1:${cpPort}/healthz HTTP/1.1\r\nHost: ${previewHost}\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`,
      );
      expect(hostForm).toMatch(/^HTTP\/1.1 400/);
      const pathForm = await rawSocket(
        cp.url,
        `GET http://169.254.169.254${prefix}/echo HTTP/1.1\r\nHost: 127.0.0.1:${cpPort}\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
      );
      expect(pathForm).toMatch(/^HTTP\/1.1 400/);
      expect(dev.hits).toBe(before);
    });

    it("dials only the preview's own box, whatever the request names", async () => {
      const res = await raw(cp.url, `${prefix}/echo`, {
        headers: { ...bearer, host: "169.254.169.254", "x-forwarded-host": "10.0.0.1" },
      });
      // It reached our dev server (the box), not the host the request named.
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body).headers["x-forwarded-host"]).toBe("169.254.169.254");
    });

    it("never dials a metadata, unspecified or non-IP box address", async () => {
      const setIp = (ip: string) =>
        pool.query(
          "UPDATE workspace_instances SET public_ip = $2 WHERE workspace_id = $1 AND stopped_at IS NULL",
          [workspaceId, ip],
        );
      try {
        for (const ip of ["169.254.169.254", "0.0.0.0", "localhost", "example.com"]) {
          await setIp(ip);
          // The trigger's NOTIFY, not the cache's 30 s TTL, makes the new address visible.
          await waitFor(
            `refusal for ${ip}`,
            async () => {
              const res = await raw(cp.url, `${prefix}/echo`, { headers: bearer });
              return res.status === 502 && !res.body.includes(ip) && res.body.includes("not running");
            },
            10_000,
          );
          const before = dev.hits;
          expect((await raw(cp.url, `${prefix}/echo`, { headers: bearer })).status).toBe(502);
          expect(dev.hits).toBe(before);
        }
      } finally {
        await setIp("127.0.0.1");
      }
      await waitFor(
        "routing back to the box",
        async () => (await raw(cp.url, `${prefix}/echo`, { headers: bearer })).status === 200,
        10_000,
      );
    });

    it("refuses ports outside the range and the control plane's own port, even when detected", async () => {
      const before = dev.hits;
      for (const port of [80, 7681, Number(cpPort)]) {
        const { rows } = await pool.query(
          "INSERT INTO previews (workspace_id, port, source) VALUES ($1, $2, 'detected') RETURNING id",
          [workspaceId, port],
        );
        const res = await raw(cp.url, `/api/v1/previews/${rows[0].id}/healthz`, { headers: bearer });
        expect(res.status, String(port)).toBe(403);
        expect(res.body).not.toContain("127.0.0.1");
        await pool.query("UPDATE previews SET closed_at = now() WHERE id = $1", [rows[0].id]);
      }
      expect(dev.hits).toBe(before);
    });

    it("answers a dead dev server with a 502 page that names no address", async () => {
      const dead = await startDevServer();
      const port = dead.port;
      await dead.close();
      const made = await json(
        await cp.api(`/api/v1/workspaces/${workspaceId}/previews`, { method: "POST", token, json: { port } }),
      );
      const res = await raw(cp.url, `/api/v1/previews/${made.preview.id}/`, { headers: bearer });
      expect(res.status).toBe(502);
      expect(res.headers["content-type"]).toContain("text/html");
      expect(res.body).toContain("dev server is not answering");
      expect(res.body).not.toContain("127.0.0.1");
      expect(res.body).not.toContain(String(port));
      const ws = openWs(`ws://127.0.0.1:${cpPort}/api/v1/previews/${made.preview.id}/`, bearer);
      await expect(ws).rejects.toThrow("status 502");
      const closed = await cp.api(`/api/v1/workspaces/${workspaceId}/previews/${made.preview.id}`, {
        method: "DELETE",
        token,
      });
      expect(closed.status).toBe(204);
      expect((await raw(cp.url, `/api/v1/previews/${made.preview.id}/`, { headers: bearer })).status).toBe(
        404,
      );
    });
  });

  describe("sockets nobody is left holding", () => {
    it("dials nothing for an upgrade whose client reset while it was being admitted", async () => {
      const hold = holdAdmission(cp);
      try {
        const hits = dev.hits;
        const client = connect(Number(cpPort), "127.0.0.1");
        client.on("error", () => {});
        await once(client, "connect");
        client.write(upgradeRequest(`${prefix}/`, bearer));
        await waitFor("the upgrade's admission", () => hold.admitting);
        const gone = once(client, "close");
        client.resetAndDestroy();
        await gone;
        hold.letThrough();
        // A WebSocket after it, admitted the same way, dialled once: the first one, decided before it, never
        // dials. (Were it to dial, it would most likely have done so by now: the two take the same steps.)
        const after = await openWs(`ws://127.0.0.1:${cpPort}${prefix}/`, bearer);
        expect(await echoOnce(after, "after")).toBe("after");
        after.close();
        expect(dev.hits).toBe(hits + 1);
      } finally {
        hold.restore();
      }
    });

    it("closes the dev server's pending handshake when the client leaves", async () => {
      const held = dev.heldUpgrades.length;
      const client = connect(Number(cpPort), "127.0.0.1");
      client.on("error", () => {});
      await once(client, "connect");
      client.write(upgradeRequest(`${prefix}/hold`, bearer));
      const upstream = await waitFor("the handshake at the dev server", () => dev.heldUpgrades[held]);
      client.destroy();
      await waitFor("the dev server's side closed", () => upstream.destroyed, 10_000);
    });

    it("closes the client's socket when the dev server drops the WebSocket, though the client keeps its side open", async () => {
      const client = connect({ port: Number(cpPort), host: "127.0.0.1", allowHalfOpen: true });
      client.on("error", () => {});
      let received = "";
      client.on("data", (d: Buffer) => {
        received += d.toString("latin1");
      });
      let closed = false;
      client.once("close", () => {
        closed = true;
      });
      await once(client, "connect");
      const ended = once(client, "end");
      client.write(upgradeRequest(`${prefix}/`, bearer));
      await waitFor("the 101", () => received.startsWith("HTTP/1.1 101 "));
      client.write(maskedText("drop")); // the dev server's echo drops its connection
      await ended;
      // Closed, not only ended: what the client sends now is reset (seen by the write after the one reset).
      await waitFor(
        "the client's socket reset",
        () => {
          if (!closed) client.write(maskedText("more"));
          return closed;
        },
        10_000,
      );
    });

    it("closes a connection whose request body the dev server answered without reading", async () => {
      const client = connect(Number(cpPort), "127.0.0.1");
      client.on("error", () => {});
      let received = "";
      client.on("data", (d: Buffer) => {
        received += d.toString("latin1");
      });
      const ended = once(client, "end");
      await once(client, "connect");
      const head = `POST ${prefix}/early HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${bearer.authorization}\r\nContent-Length: 1000000\r\n\r\n`;
      client.write(`${head}${"a".repeat(10)}`);
      // The rest of the body is never read: the connection cannot serve another request, so it is closed.
      await ended;
      expect(received).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(received.toLowerCase()).toContain("connection: close\r\n");
      expect(received.endsWith("early")).toBe(true);
      client.destroy();
    });
  });

  describe("restart", () => {
    it("a new control plane on the same database routes the preview at once", async () => {
      // An HMR socket left open must not hold the shutdown (upgraded sockets escape server.close()).
      const hmr = await openWs(`ws://127.0.0.1:${cpPort}${prefix}/`, bearer);
      const dropped = new Promise((resolve) => hmr.once("close", resolve));
      // Nor one still being admitted when the shutdown comes.
      const hold = holdAdmission(cp);
      const pending = connect(Number(cpPort), "127.0.0.1");
      pending.on("error", () => {});
      pending.resume(); // read, so its 'close' cannot wait behind bytes nobody reads (a 101, if it came first)
      // Not events.once: its promise for 'close' rejects on an 'error' (a reset) that may come first.
      const pendingClosed = new Promise((resolve) => pending.once("close", resolve));
      await once(pending, "connect");
      pending.write(upgradeRequest(`${prefix}/`, bearer));
      await waitFor("the pending upgrade's admission", () => hold.admitting);
      // Nothing else ends those sockets: if they held the shutdown, close() would never return.
      const closing = cp.close();
      hold.letThrough();
      await closing;
      await dropped;
      await pendingClosed;
      const second = await startTestControlPlane({
        BERTH_PREVIEW_DOMAIN: DOMAIN,
        DATABASE_URL: cp.deps.database.url,
        BERTH_LOCAL_TOKEN: token,
      });
      const res = await raw(second.url, `${prefix}/echo`, { headers: bearer });
      expect(res.status).toBe(200);
      const ws = await openWs(`ws://127.0.0.1:${new URL(second.url).port}${prefix}/`, bearer);
      expect(await echoOnce(ws, "after restart")).toBe("after restart");
      ws.close();
    });
  });

  async function ownerId(): Promise<string | undefined> {
    const r = await pool.query("SELECT owner_id FROM workspaces WHERE id = $1", [workspaceId]);
    return r.rows[0]?.owner_id;
  }
});

describe("minting preview credentials", async () => {
  const cp = await startTestControlPlane({ BERTH_PREVIEW_DOMAIN: DOMAIN });
  const token = cp.localToken;
  const created = await json(await cp.api("/api/v1/workspaces", { method: "POST", token, json: {} }));
  const declared = await json(
    await cp.api(`/api/v1/workspaces/${created.workspace.id}/previews`, {
      method: "POST",
      token,
      json: { port: 5173 },
    }),
  );
  const previewId: string = declared.preview.id;

  it("is rate-limited per user (codes and links share one budget)", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 120; i++) {
      const res = await cp.api(`/api/v1/previews/${previewId}/${i % 2 ? "open" : "share"}`, {
        method: "POST",
        token,
        json: {},
      });
      statuses.push(res.status);
    }
    expect(new Set(statuses)).toEqual(new Set([200, 201]));
    const over = await cp.api(`/api/v1/previews/${previewId}/open`, { method: "POST", token, json: {} });
    expect(over.status).toBe(429);
    expect(Number(over.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("needs a preview domain for the host form and links", async () => {
    const plain = await startTestControlPlane();
    // Local mode defaults to preview.localhost; a hosted deployment may have no preview domain at all.
    plain.deps.config.previewDomain = undefined;
    const ws = await json(
      await plain.api("/api/v1/workspaces", { method: "POST", token: plain.localToken, json: {} }),
    );
    const p = await json(
      await plain.api(`/api/v1/workspaces/${ws.workspace.id}/previews`, {
        method: "POST",
        token: plain.localToken,
        json: { port: 5173 },
      }),
    );
    const res = await plain.api(`/api/v1/previews/${p.preview.id}/open`, {
      method: "POST",
      token: plain.localToken,
      json: {},
    });
    expect(res.status).toBe(409);
    expect((await json(res)).error.code).toBe("preview_domain_unset");
  });
});
