import type { IncomingHttpHeaders } from "node:http";
/**
 * The proxy's pure decisions: which requests are its, which paths are safe, which addresses are dialled,
 * and which fields reach the dev server and the client (the byte relay's line-based forwarding checked
 * against the object-based sanitizers the other paths use, on seeded random heads).
 */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../platform/config.ts";
import { entriesOf, headersOf } from "../../test/field-lines.ts";
import { prng } from "../../test/prng.ts";
import { parseRequestHead, parseResponseHead } from "./http1.ts";
import { isAllowedUpstream } from "./port-policy.ts";
import {
  classify,
  forwardedRequestHead,
  forwardedResponseHead,
  isCredentialCookie,
  isSafePath,
  rewriteLocation,
  safeNext,
  sanitizeRequestHeaders,
  sanitizeResponseHeaders,
  withoutCookies,
} from "./request.ts";

const ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";

describe("classify", () => {
  it("takes the path form, except the API's own sub-routes", () => {
    expect(classify("GET", `/api/v1/previews/${ID}/a?b=1`, "api", undefined)).toMatchObject({
      form: "path",
      previewId: ID,
      forwardPath: "/a?b=1",
    });
    expect(classify("GET", `/api/v1/previews/${ID}/share`, "api", undefined)).toMatchObject({ form: "path" });
    expect(classify("POST", `/api/v1/previews/${ID}/share`, "api", undefined)).toBeNull();
    expect(classify("DELETE", `/api/v1/previews/${ID}/share`, "api", undefined)).toBeNull();
    expect(classify("POST", `/api/v1/previews/${ID}/open`, "api", undefined)).toBeNull();
    expect(classify("GET", `/api/v1/previews/${ID}`, "api", undefined)).toBeNull();
    expect(classify("GET", "/api/v1/workspaces", "api", undefined)).toBeNull();
  });

  it("owns every host on the preview domain, and nothing when the domain is unset", () => {
    expect(classify("GET", "/x", `${ID}.p.test:8080`, "p.test")).toMatchObject({
      form: "host",
      previewId: ID,
    });
    expect(classify("GET", "/x", `${ID.toUpperCase()}.P.TEST.`, "p.test")).toMatchObject({ previewId: ID });
    expect(classify("GET", "/x", "p.test", "p.test")).toEqual({ form: "refused", page: "not_found" });
    expect(classify("GET", "/x", `a.${ID}.p.test`, "p.test")).toEqual({ form: "refused", page: "not_found" });
    expect(classify("GET", "/x", `${ID}.p.test`, undefined)).toBeNull();
    expect(classify("GET", "/x", `${ID}.p.test.evil`, "p.test")).toBeNull();
  });

  it("refuses absolute-URI request lines aimed at the path form", () => {
    expect(classify("GET", `http://10.0.0.1/api/v1/previews/${ID}/x`, "api", undefined)).toEqual({
      form: "refused",
      page: "bad_path",
    });
  });
});

describe("isSafePath", () => {
  it.each([
    ["/", true],
    ["/a/b.c/d?x=../..", true],
    ["/a%20b/%E2%9C%93", true],
    ["/..", false],
    ["/a/../b", false],
    ["/a/./b", false],
    ["/%2e%2e/x", false],
    ["/%2E./x", false],
    ["/a%2f..%2fb", false],
    ["/a\\b", false],
    ["/a%5cb", false],
    ["/%00", false],
    ["/%zz", false],
    ["//host/x", false],
    ["http://host/x", false],
    ["*", false],
  ])("%s → %s", (path, safe) => {
    expect(isSafePath(path)).toBe(safe);
  });
});

describe("upstream", () => {
  // Which addresses may be dialled at all is the upstream resolver's address policy (boxnet/path-resolver.test.ts).
  const instance = (publicIp: string | null) => ({
    id: "i-1",
    publicIp,
    tailnetIp: null,
    terminalPort: 41000,
  });

  it("allows only 1024-65535 without the box's services and, on loopback, this control plane", () => {
    const reserved = { controlPlaneLocal: new Set([7600, 5432]) };
    expect(isAllowedUpstream("203.0.113.9", 5173, instance("203.0.113.9"), reserved)).toBe(true);
    expect(isAllowedUpstream("203.0.113.9", 7600, instance("203.0.113.9"), reserved)).toBe(true);
    for (const port of [22, 80, 1023, 7681, 7690, 41000, 65536, 3.5]) {
      expect(isAllowedUpstream("203.0.113.9", port, instance("203.0.113.9"), reserved), String(port)).toBe(
        false,
      );
    }
    expect(isAllowedUpstream("127.0.0.1", 7600, instance("127.0.0.1"), reserved)).toBe(false);
    expect(isAllowedUpstream("127.0.0.1", 5432, instance("127.0.0.1"), reserved)).toBe(false);
  });
});

describe("headers and redirects", () => {
  it("strips our credentials and Clerk's, suffixed variants included, and nothing else", () => {
    expect(withoutCookies("a=1; berth_session=x; b=2;berth_preview=y")).toBe("a=1; b=2");
    expect(withoutCookies("berth_session=x")).toBeUndefined();
    expect(
      withoutCookies(
        "__session=j; __session_AbC1=j; __client_uat=1; __clerk_db_jwt=d; __Host-berth_preview=p; session=app",
      ),
    ).toBe("session=app");
    expect(withoutCookies("__sessionx=1; my__session=2")).toBe("__sessionx=1; my__session=2");
    expect(isCredentialCookie("__refresh_x9")).toBe(true);
  });

  it("drops a dev server's Set-Cookie for any credential cookie, keeps its own", () => {
    const headers: IncomingHttpHeaders = {
      "set-cookie": ["__session=planted; Path=/", "berth_session=x", "app=1; Path=/", "__client_uat_ab=0"],
    };
    sanitizeResponseHeaders(headers);
    expect(headers["set-cookie"]).toEqual(["app=1; Path=/"]);
    // Hop-by-hop: a dev server's `Connection: close` must not close the client's kept-alive connection.
    const hop: IncomingHttpHeaders = {
      connection: "close, x-hop",
      "x-hop": "1",
      "keep-alive": "timeout=5",
      upgrade: "h2c",
      etag: "e",
    };
    sanitizeResponseHeaders(hop);
    expect(hop).toEqual({ etag: "e" });
    const lone = { "set-cookie": "__session=planted; Path=/" } as unknown as IncomingHttpHeaders;
    sanitizeResponseHeaders(lone);
    expect(lone["set-cookie"]).toBeUndefined();
  });

  it("rewrites redirects to the box into the preview, and keeps `next` on the same host", () => {
    expect(rewriteLocation("http://127.0.0.1:5173/x?y", "127.0.0.1:5173", undefined)).toBe("/x?y");
    expect(rewriteLocation("/x", "127.0.0.1:5173", "/api/v1/previews/p")).toBe("/api/v1/previews/p/x");
    expect(rewriteLocation("/api/v1/previews/p/x", "127.0.0.1:5173", "/api/v1/previews/p")).toBe(
      "/api/v1/previews/p/x",
    );
    expect(rewriteLocation("https://example.com/", "127.0.0.1:5173", "/p")).toBe("https://example.com/");
    // Reached over the tailnet, a dev server builds its redirect from that address: rewritten too.
    expect(rewriteLocation("http://100.64.0.9:3000/in", ["1.2.3.4:3000", "100.64.0.9:3000"], undefined)).toBe(
      "/in",
    );
    expect(safeNext("/a?b")).toBe("/a?b");
    for (const bad of [
      "//evil.example",
      "/\\evil.example",
      "https://evil.example",
      "evil",
      null,
      "/a/../b",
    ]) {
      expect(safeNext(bad)).toBe("/");
    }
  });
});

describe("BERTH_PREVIEW_DOMAIN", () => {
  it("is a bare DNS name, off the API's host", () => {
    expect(loadConfig({ BERTH_PREVIEW_DOMAIN: "Preview.Localhost" }).previewDomain).toBe("preview.localhost");
    // Local mode defaults to preview.localhost (browsers resolve *.localhost to loopback); hosted mode to none.
    expect(loadConfig({}).previewDomain).toBe("preview.localhost");
    expect(
      loadConfig({
        CLERK_SECRET_KEY: "sk_x",
        BERTH_AUTHORIZED_PARTIES: "https://a",
        BERTH_SECRET_KEYS: "k:x",
        BERTH_DRIVER: "pulumi",
      }).previewDomain,
    ).toBeUndefined();
    for (const bad of ["http://p.test", "p.test:8080", "localhost", "-x.test"]) {
      expect(() => loadConfig({ BERTH_PREVIEW_DOMAIN: bad }), bad).toThrow(/^BERTH_PREVIEW_DOMAIN: /);
    }
    // Previews under the API's host (or the API under the previews') would share its site and cookies.
    for (const [api, preview] of [
      ["http://berth.test:7600", "p.berth.test"],
      ["http://api.p.test", "p.test"],
      ["http://p.test", "p.test"],
    ]) {
      expect(() => loadConfig({ BERTH_PUBLIC_URL: api!, BERTH_PREVIEW_DOMAIN: preview! }), preview).toThrow(
        /^BERTH_PREVIEW_DOMAIN: must not contain or sit under the API host/,
      );
    }
  });
});

/** A field name in a random spelling: proxies meet every case. */
function spell(r: () => number, name: string): string {
  return [...name].map((c) => (r() < 0.5 ? c.toUpperCase() : c)).join("");
}

const REQUEST_FIELDS: Array<[string, string[]]> = [
  ["accept", ["*/*", "text/javascript"]],
  ["user-agent", ["Mozilla/5.0 (X11; Linux x86_64)"]],
  ["connection", ["keep-alive", "close", "x-secret, keep-alive", "TE, X-Drop", "Cookie, keep-alive"]],
  ["keep-alive", ["timeout=5"]],
  ["te", ["trailers"]],
  ["trailer", ["x-t"]],
  ["proxy-authorization", ["Basic Zm9vOmJhcg=="]],
  ["proxy-connection", ["keep-alive"]],
  ["x-secret", ["dropped when Connection names it"]],
  ["x-drop", ["likewise"]],
  ["x-forwarded-for", ["6.6.6.6"]],
  ["x-forwarded-host", ["evil.test"]],
  ["x-forwarded-anything", ["1"]],
  ["forwarded", ["for=6.6.6.6"]],
  ["x-real-ip", ["6.6.6.6"]],
  ["authorization", ["Bearer berth_pat_x"]],
  [
    "cookie",
    ["berth_preview=v1.x; theme=dark", "__session=clerk", "a=1", "berth_session=s; __Host-berth_preview=h"],
  ],
  ["if-none-match", ['W/"1"']],
  ["x-app", ["a", "b"]],
];

const RESPONSE_FIELDS: Array<[string, string[]]> = [
  ["content-type", ["text/javascript"]],
  ["etag", ['W/"1"']],
  ["cache-control", ["no-cache"]],
  ["connection", ["keep-alive", "x-internal", "Keep-Alive, X-Internal"]],
  ["keep-alive", ["timeout=5"]],
  ["x-internal", ["dropped when Connection names it"]],
  ["proxy-authenticate", ["Basic"]],
  ["trailer", ["x-t"]],
  ["upgrade", ["h2c"]],
  ["set-cookie", ["app=1; Path=/", "berth_session=planted; Path=/", "__session=x", "theme=dark"]],
  ["location", ["http://10.0.0.5:5173/next?a=1", "/relative", "https://elsewhere.test/"]],
  ["vary", ["Accept", "Origin"]],
];

/** A head with 0 to 10 fields picked from `pool` in random spellings, after `first` (and `last`). */
function randomHead(r: () => number, first: string, pool: Array<[string, string[]]>, last: string): string {
  const lines = [first];
  for (let n = Math.floor(r() * 11); n > 0; n--) {
    const [name, values] = pool[Math.floor(r() * pool.length)]!;
    // A repeated singleton (Authorization, User-Agent) is handed over, not relayed (http1.test.ts).
    if (
      ["authorization", "user-agent", "proxy-authorization"].includes(name) &&
      lines.some((l) => l.toLowerCase().startsWith(`${name}:`))
    )
      continue;
    lines.push(`${spell(r, name)}:${r() < 0.5 ? " " : ""}${values[Math.floor(r() * values.length)]!}`);
  }
  return `${[...lines, last].join("\r\n")}\r\n\r\n`;
}

describe("forwarding a relayed head", () => {
  it("drops a Host the client's Connection names, as sanitizeRequestHeaders does (no X-Forwarded-Host)", () => {
    const text = `GET / HTTP/1.1\r\nHost: ${ID}.preview.test\r\nConnection: host\r\nAccept: */*\r\n\r\n`;
    const parsed = parseRequestHead(Buffer.from(text, "latin1"));
    if (parsed.kind !== "request") throw new Error(parsed.kind);
    const expected = headersOf(parsed.head.fields);
    sanitizeRequestHeaders(expected, { remoteAddress: "127.0.0.1", proto: "http", websocket: false });
    expect(forwardedRequestHead(parsed.head, { remoteAddress: "127.0.0.1", proto: "http" })).toBe(
      "GET / HTTP/1.1\r\nAccept: */*\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\r\n",
    );
    expect({ ...expected }).toEqual({
      accept: "*/*",
      "x-forwarded-for": "127.0.0.1",
      "x-forwarded-proto": "http",
    });
  });

  const SEED = 0x4ead;
  const CASES = 600;

  it(`leaves the request fields sanitizeRequestHeaders leaves, plus the same forwarding fields (seed ${SEED})`, () => {
    const r = prng(SEED);
    for (let n = 0; n < CASES; n++) {
      const text = randomHead(
        r,
        "GET /src/a.ts?x=1 HTTP/1.1",
        REQUEST_FIELDS,
        `${spell(r, "host")}: ${ID}.preview.test`,
      );
      const label = `case ${n}: ${JSON.stringify(text)}`;
      const parsed = parseRequestHead(Buffer.from(text, "latin1"));
      expect(parsed.kind, label).toBe("request");
      if (parsed.kind !== "request") continue;
      const wire = forwardedRequestHead(parsed.head, { remoteAddress: "127.0.0.1", proto: "https" });
      const forwarded = parseRequestHead(Buffer.from(wire, "latin1"));
      expect(forwarded.kind, label).toBe("request");
      if (forwarded.kind !== "request") continue;
      const expected = headersOf(parsed.head.fields);
      sanitizeRequestHeaders(expected, { remoteAddress: "127.0.0.1", proto: "https", websocket: false });
      expect({ ...headersOf(forwarded.head.fields) }, label).toEqual({ ...expected });
      expect(forwarded.head.target).toBe("/src/a.ts?x=1");
    }
  });

  it(`leaves the response fields sanitizeResponseHeaders leaves, Location rewritten alike (seed ${SEED})`, () => {
    const r = prng(SEED + 1);
    const authorities = ["10.0.0.5:5173"];
    const location = (l: string) => rewriteLocation(l, authorities, undefined);
    for (let n = 0; n < CASES; n++) {
      const text = randomHead(r, "HTTP/1.1 200 OK", RESPONSE_FIELDS, "Content-Length: 0");
      const label = `case ${n}: ${JSON.stringify(text)}`;
      const parsed = parseResponseHead(Buffer.from(text, "latin1"), "GET");
      expect(parsed.kind, label).toBe("response");
      if (parsed.kind !== "response") continue;
      const wire = forwardedResponseHead(parsed.head, false, 5, location);
      const forwarded = parseResponseHead(Buffer.from(wire, "latin1"), "GET");
      expect(forwarded.kind, label).toBe("response");
      if (forwarded.kind !== "response") continue;
      // What the relay re-states itself: its framing and its own keep-alive hint.
      const restated = ["content-length", "keep-alive"];
      const expected = headersOf(parsed.head.fields, restated);
      sanitizeResponseHeaders(expected);
      const locations = entriesOf(parsed.head.fields).filter(([name]) => name === "location");
      if (locations.length) expected.location = locations.map(([, l]) => location(l)).join(", ");
      expect({ ...headersOf(forwarded.head.fields, restated) }, label).toEqual({ ...expected });
      expect(
        entriesOf(forwarded.head.fields).filter(([name]) => restated.includes(name)),
        label,
      ).toEqual([
        ["content-length", "0"],
        ["keep-alive", "timeout=5"],
      ]);
    }
  });
});
