/**
 * The byte relay's HTTP/1.1 heads (http1.ts), as pure functions: which request heads it may forward and
 * which it hands to node:http, how a response's body is framed, that a forwarded head re-serializes to the
 * same fields, and where a chunked body ends. A seeded fuzz (mulberry32, fixed seed: a failure names its
 * case and replays) mutates valid heads: the parsers never throw, and every request they accept
 * re-serializes to a head that parses to exactly the same fields.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { entriesOf, headersOf } from "../../test/field-lines.ts";
import { prng } from "../../test/prng.ts";
import {
  ChunkedBodyTracker,
  MAX_HEAD_BYTES,
  parseRequestHead,
  parseResponseHead,
  type RequestHead,
  type ResponseHead,
  serializeRequestHead,
  serializeResponseHead,
} from "./http1.ts";

const b = (s: string) => Buffer.from(s, "latin1");

function request(text: string): RequestHead {
  const parsed = parseRequestHead(b(text));
  if (parsed.kind !== "request") throw new Error(`expected a request, got ${JSON.stringify(parsed)}`);
  return parsed.head;
}

function response(text: string, method = "GET"): ResponseHead {
  const parsed = parseResponseHead(b(text), method);
  if (parsed.kind !== "response") throw new Error(`expected a response, got ${JSON.stringify(parsed)}`);
  return parsed.head;
}

/** The fields a forwarded request carries (its length is the wire's, not the request's). */
function fields(head: RequestHead) {
  return {
    method: head.method,
    target: head.target,
    host: head.host,
    cookie: head.cookie,
    headers: headersOf(head.fields),
    close: head.close,
  };
}

/** What serializing a response re-states: its own framing and connection fields are the relay's. */
const RESTATED = ["content-length", "transfer-encoding", "connection", "keep-alive"];

/** A response as the client learns it, apart from the connection's management. */
function responseView(head: ResponseHead) {
  const { status, reason, framing, contentLength } = head;
  return { status, reason, framing, contentLength, headers: headersOf(head.fields, RESTATED) };
}

const CHROMIUM_GET = [
  "GET /src/main.tsx?t=1712345678901 HTTP/1.1",
  "Host: 3f2504e0-4f89-41d3-9a0c-0305e82c3301.preview.test:8443",
  "Connection: close",
  'sec-ch-ua: "Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"',
  "sec-ch-ua-mobile: ?0",
  "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  'sec-ch-ua-platform: "Linux"',
  "Accept: */*",
  "Sec-Fetch-Site: same-origin",
  "Sec-Fetch-Mode: cors",
  "Sec-Fetch-Dest: script",
  "Referer: https://3f2504e0-4f89-41d3-9a0c-0305e82c3301.preview.test:8443/",
  "Accept-Encoding: gzip, deflate, br, zstd",
  "Accept-Language: en-US,en;q=0.9",
  "Accept: text/javascript",
  "Cookie: a=1",
  "Cookie: b=2",
  'If-None-Match: \t W/"1f-abc" \t',
  "",
  "",
].join("\r\n");

const VALID_GET = "GET /a?b=1 HTTP/1.1\r\nHost: relay.test\r\nAccept: */*\r\n\r\n";

describe("parseRequestHead", () => {
  it("parses a realistic Chromium GET: lowercased names, repeats kept, Cookie joined with '; ', close, length", () => {
    const head = request(CHROMIUM_GET);
    expect(head.method).toBe("GET");
    expect(head.host).toBe("3f2504e0-4f89-41d3-9a0c-0305e82c3301.preview.test:8443");
    expect(head.cookie).toBe("a=1; b=2");
    expect(head.connection).toEqual(["close"]);
    expect(head.fields.names.length).toBe(CHROMIUM_GET.split("\r\n").length - 3);
    expect(head.target).toBe("/src/main.tsx?t=1712345678901");
    expect(head.close).toBe(true);
    expect(head.length).toBe(Buffer.byteLength(CHROMIUM_GET, "latin1"));
    expect(headersOf(head.fields)).toEqual({
      host: "3f2504e0-4f89-41d3-9a0c-0305e82c3301.preview.test:8443",
      connection: "close",
      "sec-ch-ua": '"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"',
      "sec-ch-ua-mobile": "?0",
      "user-agent":
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
      "sec-ch-ua-platform": '"Linux"',
      accept: "*/*, text/javascript",
      "sec-fetch-site": "same-origin",
      "sec-fetch-mode": "cors",
      "sec-fetch-dest": "script",
      referer: "https://3f2504e0-4f89-41d3-9a0c-0305e82c3301.preview.test:8443/",
      "accept-encoding": "gzip, deflate, br, zstd",
      "accept-language": "en-US,en;q=0.9",
      cookie: "a=1; b=2",
      "if-none-match": 'W/"1f-abc"',
    });
  });

  it("keeps the connection without Connection: close, and finds close among other tokens", () => {
    expect(request(VALID_GET).close).toBe(false);
    expect(request("HEAD / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n").close).toBe(false);
    expect(request("HEAD / HTTP/1.1\r\nHost: a\r\nConnection: TE, Close\r\n\r\n").close).toBe(true);
    expect(request("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").method).toBe("HEAD");
  });

  it("reports only the head's own length when a pipelined request follows it", () => {
    const head = request(`${VALID_GET}GET /next HTTP/1.1\r\nHost: relay.test\r\n\r\n`);
    expect(head.length).toBe(VALID_GET.length);
    expect(head.target).toBe("/a?b=1");
  });

  it("keeps a field named like an Object.prototype property as sent (constructor, __proto__)", () => {
    const head = request("GET / HTTP/1.1\r\nHost: a\r\nConstructor: x\r\n__proto__: y\r\n\r\n");
    expect(entriesOf(head.fields)).toEqual([
      ["host", "a"],
      ["constructor", "x"],
      ["__proto__", "y"],
    ]);
    const again = request(serializeRequestHead(head));
    expect(entriesOf(again.fields)).toEqual(entriesOf(head.fields));
  });

  it("keeps no head alive through the cache of lowercased names", () => {
    // A name sliced from a head is a view that keeps the whole head; the cache must hold copies.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    gc();
    const before = process.memoryUsage().heapUsed;
    const pad = "p".repeat(15_000);
    for (let i = 0; i < 200; i++)
      request(`GET / HTTP/1.1\r\nHost: a\r\nX-Distinct-Name-${i}: 1\r\nX-Pad: ${pad}\r\n\r\n`);
    gc();
    // 200 heads of 15 KB would be 3 MB; the names alone are a few KB.
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(1_000_000);
  });

  it("is incomplete until the head's CRLF CRLF arrives", () => {
    for (let i = 0; i < VALID_GET.length; i++) {
      expect(parseRequestHead(b(VALID_GET.slice(0, i))), `${i} bytes`).toEqual({ kind: "incomplete" });
    }
    expect(parseRequestHead(b(VALID_GET)).kind).toBe("request");
  });

  it("accepts a head of exactly 16 KiB", () => {
    const start = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    const text = `${start}${"p".repeat(MAX_HEAD_BYTES - start.length - 4)}\r\n\r\n`;
    expect(text.length).toBe(MAX_HEAD_BYTES);
    expect(request(text).length).toBe(MAX_HEAD_BYTES);
  });

  const pad = (n: number) => `X-Pad: ${"p".repeat(n)}\r\n`;
  it.each([
    ["HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\n\r\n"],
    ["HTTP/2 preface-ish version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n"],
    ["lowercase method", "get / HTTP/1.1\r\nHost: a\r\n\r\n"],
    ["absolute-form target", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"],
    ["authority-form CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"],
    ["OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"],
    ["POST", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"],
    ["GET with Content-Length", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"],
    ["GET with Transfer-Encoding", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"],
    ["Upgrade", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"],
    ["Expect", "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"],
    ["leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"],
    ["two spaces in the request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"],
    ["a space in the target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"],
    ["a non-ASCII byte in the target", "GET /\xe9 HTTP/1.1\r\nHost: a\r\n\r\n"],
    ["NUL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n"],
    ["0x7f in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x7f2\r\n\r\n"],
    ["ESC in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: \x1b[0m\r\n\r\n"],
    ["bare LF", "GET / HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n"],
    ["bare LF line endings", "GET / HTTP/1.1\nHost: a\n\r\n\r\n"],
    ["bare CR", "GET / HTTP/1.1\r\nHost: a\rX-A: 1\r\n\r\n"],
    ["bare CR right before the final CRLF CRLF", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"],
    ["obs-fold (SP)", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n"],
    ["obs-fold (HTAB)", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n"],
    ["space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"],
    ["tab before the colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"],
    ["empty field name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n"],
    ["a field line without a colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n"],
    ["a non-token field name", "GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n"],
    ["duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"],
    ["duplicate Host, differently cased", "GET / HTTP/1.1\r\nHost: a\r\nhOST: a\r\n\r\n"],
    ["duplicate User-Agent", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\nUser-Agent: y\r\n\r\n"],
    ["duplicate Authorization", "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: x\r\nAuthorization: y\r\n\r\n"],
    ["no Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"],
    ["head of 16 KiB + 1", `GET / HTTP/1.1\r\nHost: a\r\n${pad(MAX_HEAD_BYTES - 31)}\r\n`],
    ["16 KiB without a head end", `GET / HTTP/1.1\r\nHost: a\r\n${pad(MAX_HEAD_BYTES)}`],
  ])("hands over: %s", (_name, text) => {
    const parsed = parseRequestHead(b(text));
    expect(parsed.kind).toBe("handover");
  });

  it("hands over a head one byte past 16 KiB, and only then", () => {
    const start = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    const text = `${start}${"p".repeat(MAX_HEAD_BYTES - start.length - 3)}\r\n\r\n`;
    expect(text.length).toBe(MAX_HEAD_BYTES + 1);
    expect(parseRequestHead(b(text))).toEqual({ kind: "handover", reason: "head too large" });
  });
});

describe("parseResponseHead", () => {
  it("frames a body by Content-Length, and keeps the connection", () => {
    const head = response("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
    expect(head).toMatchObject({ status: 200, reason: "OK", framing: { kind: "length", length: 5 } });
    expect(head.reusable).toBe(true);
    expect(head.length).toBe(
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n".length,
    );
    expect(headersOf(head.fields)).toEqual({ "content-type": "text/plain", "content-length": "5" });
    expect(head.contentLength).toBeUndefined();
  });

  it("accepts repeated equal Content-Length fields", () => {
    const head = response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    expect(head.framing).toEqual({ kind: "length", length: 5 });
  });

  it("frames a chunked body, whatever the coding's case and spacing", () => {
    expect(response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").framing).toEqual({
      kind: "chunked",
    });
    expect(response("HTTP/1.1 200 OK\r\nTransfer-Encoding:  Chunked \r\n\r\n").framing.kind).toBe("chunked");
  });

  it("frames a body without length or coding by the connection's close, and never reuses it", () => {
    const head = response("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
    expect(head.framing).toEqual({ kind: "close" });
    expect(head.reusable).toBe(false);
  });

  it("keeps a HEAD answer's Content-Length, with no body", () => {
    const head = response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD");
    expect(head.framing).toEqual({ kind: "none" });
    expect(head.contentLength).toBe("5");
    expect(head.reusable).toBe(true);
    expect(serializeResponseHead(head, false)).toBe("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
    // Chunked on a HEAD answer frames nothing either.
    expect(response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD").framing.kind).toBe(
      "none",
    );
  });

  it.each([
    [204, "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"],
    [304, 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 10\r\n\r\n'],
    [100, "HTTP/1.1 100 Continue\r\n\r\n"],
    [103, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"],
  ])("frames no body for %s", (status, text) => {
    const head = response(text);
    expect(head.status).toBe(status);
    expect(head.framing).toEqual({ kind: "none" });
    expect(head.reusable).toBe(true);
  });

  it("keeps a 304's Content-Length for the client", () => {
    expect(response("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n").contentLength).toBe("10");
  });

  it("keeps repeated fields, Set-Cookie included, as separate lines", () => {
    const head = response(
      "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nVary: Accept\r\nset-cookie: b=2\r\nVARY: Origin\r\nContent-Length: 0\r\n\r\n",
    );
    expect(entriesOf(head.fields)).toEqual([
      ["set-cookie", "a=1"],
      ["vary", "Accept"],
      ["set-cookie", "b=2"],
      ["vary", "Origin"],
      ["content-length", "0"],
    ]);
  });

  it("accepts an empty or missing reason phrase, and latin1 in it", () => {
    expect(response("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n").reason).toBe("");
    expect(response("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").reason).toBe("");
    expect(response("HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 0\r\n\r\n").reason).toBe("Tr\xe8s bien");
  });

  it.each([
    ["HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false],
    ["Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false],
    [
      "Connection: keep-alive, Close",
      "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\n",
      false,
    ],
    ["close-delimited", "HTTP/1.1 200 OK\r\n\r\n", false],
    [
      "Connection: keep-alive",
      "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
      true,
    ],
  ])("reusable after %s: %s", (_name, text, reusable) => {
    expect(response(text).reusable).toBe(reusable);
  });

  it("is incomplete until the head's CRLF CRLF arrives", () => {
    const text = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for (let i = 0; i < text.length; i++) {
      expect(parseResponseHead(b(text.slice(0, i)), "GET"), `${i} bytes`).toEqual({ kind: "incomplete" });
    }
  });

  it.each([
    [
      "Content-Length with Transfer-Encoding",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
    [
      "Transfer-Encoding with Content-Length",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    ],
    ["gzip coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"],
    ["gzip before chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"],
    [
      "chunked before gzip",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
    ],
    ["chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"],
    ["identity coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n"],
    ["empty coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n"],
    ["Transfer-Encoding on HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"],
    ["differing Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"],
    ["Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"],
    ["non-numeric Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5a\r\n\r\n"],
    ["negative Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"],
    ["hex Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n"],
    ["empty Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n"],
    ["16-digit Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456\r\n\r\n"],
    ["bad Content-Length on a HEAD answer", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "HEAD"],
    [
      "differing Content-Length on a 304",
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
    ["101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"],
    ["101 to a HEAD", "HTTP/1.1 101 Switching Protocols\r\n\r\n", "HEAD"],
    ["NUL in a value", "HTTP/1.1 200 OK\r\nX-A: 1\x002\r\nContent-Length: 0\r\n\r\n"],
    ["0x7f in a value", "HTTP/1.1 200 OK\r\nX-A: 1\x7f\r\nContent-Length: 0\r\n\r\n"],
    ["bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"],
    ["bare CR", "HTTP/1.1 200 OK\r\nX-A: 1\r2\r\nContent-Length: 0\r\n\r\n"],
    ["obs-fold", "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n"],
    ["space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n"],
    ["HTTP/1.2", "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n"],
    ["HTTP/2", "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n"],
    ["two-digit status", "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"],
    ["status 099", "HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n"],
    ["no space before the status", "HTTP/1.1\t200 OK\r\nContent-Length: 0\r\n\r\n"],
    ["leading CRLF", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
    ["head over 64 KiB", `HTTP/1.1 200 OK\r\nX-Pad: ${"p".repeat(64 * 1024)}\r\nContent-Length: 0\r\n\r\n`],
    ["64 KiB without a head end", `HTTP/1.1 200 OK\r\nX-Pad: ${"p".repeat(64 * 1024)}`],
  ])("invalid: %s", (_name, text, method = "GET") => {
    expect(parseResponseHead(b(text), method).kind).toBe("invalid");
  });
});

describe("serialize", () => {
  it("round-trips request heads: parse, serialize, parse gives the same fields", () => {
    for (const text of [
      CHROMIUM_GET,
      VALID_GET,
      "HEAD /x%20y?z HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Latin: caf\xe9\r\nX-Tab: a\tb\r\n\r\n",
    ]) {
      const head = request(text);
      const wire = serializeRequestHead(head);
      const again = request(wire);
      expect(fields(again)).toEqual(fields(head));
      expect(again.length).toBe(Buffer.byteLength(wire, "latin1"));
      expect(serializeRequestHead(again)).toBe(wire);
    }
  });

  it("round-trips response heads, re-stating their framing", () => {
    const cases: Array<[string, string]> = [
      [
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 12\r\n\r\n",
        "GET",
      ],
      ["HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nVary: A\r\nVary: B\r\n\r\n", "GET"],
      ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD"],
      ['HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n', "GET"],
      ["HTTP/1.1 204 \r\n\r\n", "GET"],
      ["HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", "GET"],
    ];
    for (const [text, method] of cases) {
      const head = response(text, method);
      const wire = serializeResponseHead(head, false);
      const again = response(wire, method);
      expect(responseView(again)).toEqual(responseView(head));
      expect(again.length).toBe(Buffer.byteLength(wire, "latin1"));
    }
  });

  it("forwards field lines as they came, dropping or replacing only the ones the edit names, then extra lines", () => {
    const head = request(
      "GET /a HTTP/1.1\r\nHost: a\r\nX-One:  1 \r\nConnection: close\r\nX-Two: 2\r\nCookie: c=1\r\nX-Three: 3\r\n\r\n",
    );
    const wire = serializeRequestHead(
      head,
      (name) => (name === "connection" ? null : name === "cookie" ? "cookie: c=2" : undefined),
      "x-extra: e\r\n",
    );
    expect(wire).toBe(
      "GET /a HTTP/1.1\r\nHost: a\r\nX-One:  1 \r\nX-Two: 2\r\ncookie: c=2\r\nX-Three: 3\r\nx-extra: e\r\n\r\n",
    );
    expect(serializeRequestHead(head, (name) => (name === "x-three" ? null : undefined))).toBe(
      "GET /a HTTP/1.1\r\nHost: a\r\nX-One:  1 \r\nConnection: close\r\nX-Two: 2\r\nCookie: c=1\r\n\r\n",
    );
  });

  it("re-states a response's framing and connection fields, and keeps its other lines as they came", () => {
    const head = response(
      "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nX-A:  1\r\nKeep-Alive: timeout=9\r\nContent-Length: 2\r\nLocation: /x\r\n\r\n",
    );
    expect(
      serializeResponseHead(head, false, 5, (name) => (name === "location" ? "location: /y" : undefined)),
    ).toBe(
      "HTTP/1.1 200 OK\r\nX-A:  1\r\nlocation: /y\r\ncontent-length: 2\r\nkeep-alive: timeout=5\r\n\r\n",
    );
  });

  it("adds Connection: close to the client's last response, and makes a close-delimited one explicit", () => {
    const head = response("HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n");
    const wire = serializeResponseHead(head, true);
    expect(wire).toBe("HTTP/1.1 200 OK\r\nX-A: 1\r\nconnection: close\r\n\r\n");
    const again = response(wire);
    expect(again.framing).toEqual({ kind: "close" });
    expect(headersOf(again.fields)).toEqual({ "x-a": "1", connection: "close" });
    expect(serializeResponseHead(response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"), true)).toBe(
      "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n",
    );
  });
});

/** A chunked body with extensions, chunk data holding CRLF, and trailers. */
const CHUNKED = [
  "5;name=value\r\nhello\r\n",
  '1A ; a=1;b="x y"\r\nabcdefghijklmnopqrstuvwxyz\r\n',
  "3\t;x\r\n\r\n\t\r\n",
  "0;last\r\n",
  "Trailer-One: 1\r\nX-Checksum:\tabc\r\n",
  "\r\n",
].join("");

describe("ChunkedBodyTracker", () => {
  const body = b(CHUNKED);
  const extra = b("HTTP/1.1 200 OK\r\n");
  const all = Buffer.concat([body, extra]);

  it("finds the end of a body fed in one piece, followed by more bytes", () => {
    const t = new ChunkedBodyTracker();
    expect(t.push(all)).toBe(body.length);
    expect(t.done).toBe(true);
    expect(t.push(extra)).toBe(0);
  });

  it("finds the end at every split point in two pieces", () => {
    for (let i = 0; i <= all.length; i++) {
      const t = new ChunkedBodyTracker();
      const first = t.push(all.subarray(0, i));
      expect(first, `split at ${i}`).toBe(Math.min(i, body.length));
      expect(t.done, `split at ${i}`).toBe(i >= body.length);
      const second = t.push(all.subarray(i));
      expect(first + second, `split at ${i}`).toBe(body.length);
      expect(t.done).toBe(true);
    }
  });

  it("finds the end at every pair of split points (three pieces)", () => {
    for (let i = 0; i <= body.length; i++) {
      for (let j = i; j <= all.length; j++) {
        const t = new ChunkedBodyTracker();
        const n = t.push(all.subarray(0, i)) + t.push(all.subarray(i, j)) + t.push(all.subarray(j));
        expect(n, `splits at ${i}, ${j}`).toBe(body.length);
        expect(t.done).toBe(true);
      }
    }
  });

  it("is done exactly at the last byte when fed byte by byte", () => {
    const t = new ChunkedBodyTracker();
    for (let i = 0; i < all.length; i++) {
      const n = t.push(all.subarray(i, i + 1));
      expect(n, `byte ${i}`).toBe(i < body.length ? 1 : 0);
      expect(t.done, `after byte ${i}`).toBe(i >= body.length - 1);
    }
  });

  it("follows a body without trailers, and hex sizes of both cases", () => {
    const text = `a\r\n${"x".repeat(10)}\r\nA\r\n${"y".repeat(10)}\r\n000\r\n\r\n`;
    const t = new ChunkedBodyTracker();
    expect(t.push(b(`${text}tail`))).toBe(text.length);
    expect(t.done).toBe(true);
  });

  it.each([
    ["missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n"],
    ["LF without CR after data", "5\r\nhello\n0\r\n\r\n"],
    ["data longer than its size", "3\r\nhello\r\n0\r\n\r\n"],
    ["non-hex size", "g\r\nhello\r\n0\r\n\r\n"],
    ["empty size", "\r\nhello\r\n0\r\n\r\n"],
    ["negative size", "-5\r\nhello\r\n0\r\n\r\n"],
    ["0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"],
    ["space before the size", " 5\r\nhello\r\n0\r\n\r\n"],
    ["size of 13 hex digits", "0000000000005\r\nhello\r\n0\r\n\r\n"],
    ["bare LF after the size", "5\nhello\r\n0\r\n\r\n"],
    ["bare CR in the size line", "5\r;x\r\nhello\r\n0\r\n\r\n"],
    ["control character in an extension", "5;a=\x01\r\nhello\r\n0\r\n\r\n"],
    ["a size line over 4 KiB", `5;${"e".repeat(4096)}\r\nhello\r\n0\r\n\r\n`],
    ["a trailer line over 4 KiB", `0\r\nX-A: ${"t".repeat(4096)}\r\n\r\n`],
    ["bad trailer line (no colon)", "0\r\nnot a field\r\n\r\n"],
    ["bad trailer line (space before colon)", "0\r\nX-A : 1\r\n\r\n"],
    ["bad trailer line (obs-fold)", "0\r\nX-A: 1\r\n 2\r\n\r\n"],
    ["bare LF ending the trailers", "0\r\n\n"],
  ])("framing error: %s", (_name, text) => {
    const whole = new ChunkedBodyTracker();
    expect(whole.push(b(text))).toBe(-1);
    // Byte by byte, the error shows at some byte and nothing is reported done.
    const bytes = new ChunkedBodyTracker();
    let failed = false;
    for (let i = 0; i < text.length && !failed; i++) failed = bytes.push(b(text.slice(i, i + 1))) === -1;
    expect(failed).toBe(true);
    expect(bytes.done).toBe(false);
  });

  it("accepts a size line of exactly 4 KiB with its CRLF", () => {
    const line = `5;${"e".repeat(4096 - 4)}\r\n`;
    expect(line.length).toBe(4096);
    const text = `${line}hello\r\n0\r\n\r\n`;
    const t = new ChunkedBodyTracker();
    expect(t.push(b(text))).toBe(text.length);
    expect(t.done).toBe(true);
  });
});

describe("start lines against their grammar (seeded)", () => {
  // The grammar the parsers check by hand, as regular expressions: RFC 9112 §3 with origin-form only
  // (§3.2.1) for the request line, §4 for the status line (a reason of HTAB, SP, VCHAR and obs-text).
  const REQUEST_LINE = /^(GET|HEAD) (\/[\x21-\x7e]*) HTTP\/1\.1$/;
  const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/;
  const SEED = 0x73746c6e;
  const CASES = 20_000;
  const pick = (r: () => number, options: string[]) => options[Math.floor(r() * options.length)]!;
  // Valid characters weighted up, so that a fair share of lines is valid.
  const TARGET_CHARS = [
    "/",
    "a",
    "?",
    "=",
    "%",
    "*",
    "~",
    "!",
    "a",
    "b",
    " ",
    "\x7f",
    "\x80",
    "\xe9",
    "\t",
    ":",
  ];
  const target = (r: () => number) => {
    let t = pick(r, ["/", "/", "/", "/", "", "*", "http://a/", "//", "a"]);
    const n = Math.floor(r() * 4);
    for (let i = 0; i < n; i++) t += pick(r, TARGET_CHARS);
    return t;
  };

  it(`accepts a request line exactly when the grammar does, with its method and target (seed ${SEED})`, () => {
    const r = prng(SEED);
    let accepted = 0;
    for (let i = 0; i < CASES; i++) {
      const line =
        pick(r, ["GET", "HEAD", "GET", "HEAD", "POST", "get", "GETS", "", "HEA"]) +
        pick(r, [" ", " ", " ", "  ", "", "\t"]) +
        target(r) +
        pick(r, [" ", " ", " ", "  ", ""]) +
        pick(r, [
          "HTTP/1.1",
          "HTTP/1.1",
          "HTTP/1.1",
          "HTTP/1.0",
          "HTTP/1.1 ",
          "HTTP/2",
          "HTTP/1.11",
          "http/1.1",
          "",
        ]);
      const parsed = parseRequestHead(b(`${line}\r\nHost: a\r\n\r\n`));
      const m = REQUEST_LINE.exec(line);
      const got = parsed.kind === "request" ? [parsed.head.method, parsed.head.target] : null;
      expect(got, JSON.stringify(line)).toEqual(m ? [m[1], m[2]] : null);
      if (m) accepted++;
    }
    // Both outcomes are well represented, or the comparison would prove little.
    expect(accepted).toBeGreaterThan(CASES / 100);
    expect(accepted).toBeLessThan(CASES / 2);
  });

  it(`accepts a status line exactly when the grammar does, with its version, status and reason (seed ${SEED})`, () => {
    const r = prng(SEED + 1);
    let accepted = 0;
    for (let i = 0; i < CASES; i++) {
      const line =
        pick(r, ["HTTP/1.1", "HTTP/1.0", "HTTP/1.2", "HTTP/2", "http/1.1", "HTTP/1.", ""]) +
        pick(r, [" ", "  ", "", "\t"]) +
        pick(r, ["200", "204", "099", "100", "1000", "20", "abc", "999", "0200", "404", "2x0", ""]) +
        pick(r, ["", " ", " OK", " Not Found", "\tX", " \xe9t\xe9", "  two", "X", " a\tb", " ~"]);
      const parsed = parseResponseHead(b(`${line}\r\nContent-Length: 0\r\n\r\n`), "GET");
      const m = STATUS_LINE.exec(line);
      const got =
        parsed.kind === "response"
          ? [parsed.head.reusable, parsed.head.status, parsed.head.reason]
          : parsed.kind === "invalid" && parsed.reason === "malformed status line"
            ? null
            : parsed.kind;
      // 101 is refused for another reason (no upgrade was asked for); every other line the grammar takes
      // is a response, HTTP/1.0 never reused.
      const expected = !m ? null : m[2] === "101" ? "invalid" : [m[1] === "1", Number(m[2]), m[3] ?? ""];
      expect(got, JSON.stringify(line)).toEqual(expected);
      if (m) accepted++;
    }
    expect(accepted).toBeGreaterThan(CASES / 50);
    expect(accepted).toBeLessThan(CASES / 2);
  });
});

describe("heads (seeded fuzz)", () => {
  const SEED = 0x6b657931;
  const CASES = 2_000;
  const requests = [
    CHROMIUM_GET,
    VALID_GET,
    "HEAD /x HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nCookie: b=2\r\nX-A: 1\r\nx-a: 2\r\nConnection: close\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nConstructor: c\r\nTE: trailers\r\n\r\n",
  ];
  const responses: Array<[string, string]> = [
    ["HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 12\r\nSet-Cookie: a=1\r\n\r\n", "GET"],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVary: A\r\n\r\n", "GET"],
    ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD"],
    ['HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n', "GET"],
    ["HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\n", "GET"],
    ["HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", "GET"],
  ];
  const INSERTS = ["\r", "\n", "\0", " ", ":", "\t", "\r\n", "\r\n ", "\x7f", "\xff", ",", ";"];

  function mutate(r: () => number, text: string): string {
    const int = (n: number) => Math.floor(r() * n);
    let s = text;
    const rounds = 1 + int(3);
    for (let k = 0; k < rounds; k++) {
      const at = int(s.length + 1);
      switch (int(6)) {
        case 0: // flip a byte
          s = s.slice(0, at) + String.fromCharCode(int(256)) + s.slice(at + 1);
          break;
        case 1:
          s = s.slice(0, at) + INSERTS[int(INSERTS.length)]! + s.slice(at);
          break;
        case 2: // truncate
          s = s.slice(0, at);
          break;
        case 3: {
          // duplicate a line
          const lines = s.split("\r\n");
          const i = int(lines.length);
          lines.splice(i, 0, lines[i]!);
          s = lines.join("\r\n");
          break;
        }
        case 4: // delete a byte
          s = s.slice(0, at) + s.slice(at + 1);
          break;
        default: {
          // change a letter's case
          const c = s[at] ?? "";
          s = s.slice(0, at) + (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()) + s.slice(at + 1);
        }
      }
    }
    return s;
  }

  it(`never throws, and every request accepted re-serializes to the same head (seed ${SEED}, ${CASES} cases)`, () => {
    const r = prng(SEED);
    let accepted = 0;
    for (let n = 0; n < CASES; n++) {
      const isRequest = r() < 0.5;
      const [original, method] = isRequest
        ? [requests[Math.floor(r() * requests.length)]!, "GET"]
        : responses[Math.floor(r() * responses.length)]!;
      const text = mutate(r, original);
      const buf = b(text);
      const label = `case ${n}: ${JSON.stringify(text)}`;
      let req: ReturnType<typeof parseRequestHead>;
      let res: ReturnType<typeof parseResponseHead>;
      try {
        req = parseRequestHead(buf);
        res = parseResponseHead(buf, method);
      } catch (err) {
        throw new Error(`${label} threw ${String(err)}`);
      }
      if (req.kind === "request") {
        accepted++;
        const head = req.head;
        expect(head.length, label).toBeLessThanOrEqual(buf.length);
        const wire = serializeRequestHead(head);
        // Nothing in a forwarded head can end a line or a field early.
        const controls = (v: string) => [...v].filter((c) => (c < " " && c !== "\t") || c === "\x7f");
        for (const [, value] of entriesOf(head.fields)) expect(controls(value), label).toEqual([]);
        expect(head.target, label).toMatch(/^\/[\x21-\x7e]*$/);
        const again = parseRequestHead(b(wire));
        expect(again.kind, label).toBe("request");
        if (again.kind !== "request") continue;
        expect(fields(again.head), label).toEqual(fields(head));
        expect(again.head.length, label).toBe(wire.length);
        expect(serializeRequestHead(again.head), label).toBe(wire);
      }
      if (res.kind === "response") {
        const wire = serializeResponseHead(res.head, false);
        const again = parseResponseHead(b(wire), method);
        expect(again.kind, label).toBe("response");
        if (again.kind !== "response") continue;
        expect(responseView(again.head), label).toEqual(responseView(res.head));
        expect(again.head.length, label).toBe(wire.length);
      }
    }
    // The mutations leave enough requests intact for the round trip to mean something.
    expect(accepted).toBeGreaterThan(CASES / 10);
  });
});
