import type { IncomingHttpHeaders } from "node:http";
/** The proxy's pure decisions: which requests are its, which paths are safe, which addresses are dialled. */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../platform/config.ts";
import { isAllowedUpstream } from "./port-policy.ts";
import {
  classify,
  isCredentialCookie,
  isSafePath,
  rewriteLocation,
  safeNext,
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
