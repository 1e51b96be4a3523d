/**
 * The byte relay (byte-relay.ts) over real TCP on 127.0.0.1: an `http.Server` whose own request listener
 * answers `node: <method> <url> <body length>` (so a handover shows), a relay attached to it that forwards
 * GET and HEAD for `relay.test` to a scripted raw upstream (each test decides exactly which bytes it writes
 * and when, and counts its connections), and raw client sockets, so every byte the client gets is seen.
 * Nothing sleeps: tests wait on events or on conditions (waitFor).
 */
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import http, { type IncomingHttpHeaders } from "node:http";
import net, { type AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { UPSTREAM_ONREAD } from "../../boxnet/upstream-reads.ts";
import { prng } from "../../test/prng.ts";
import { waitFor } from "../../test/wait.ts";
import { ByteRelay, type ByteRelayOptions, type RelayExchange } from "./byte-relay.ts";
import { forwardedRequestHead, forwardedResponseHead } from "./request.ts";

const HOST = "relay.test";

/** One request as the upstream read it. */
interface UpstreamRequest {
  /** The head's text, CRLF CRLF excluded. */
  head: string;
  method: string;
  target: string;
  headers: Record<string, string>;
  /** The upstream connection's number (0 for the first accepted) and this request's number on it. */
  connection: number;
  index: number;
}

type UpstreamHandler = (socket: net.Socket, request: UpstreamRequest) => void;

function parseHead(text: string): { first: string; headers: Record<string, string> } {
  const [first, ...lines] = text.split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { first: first!, headers };
}

/** Answers 200 with `up: <target>` (Content-Length framed), as a keep-alive dev server would. */
const answer: UpstreamHandler = (socket, req) => {
  const body = `up: ${req.target}`;
  socket.write(
    `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${req.method === "HEAD" ? "" : body}`,
  );
};

/** The scripted dev server: raw bytes, one handler call per request head. */
class Upstream {
  readonly server: net.Server;
  readonly sockets: net.Socket[] = [];
  readonly requests: UpstreamRequest[] = [];
  handler: UpstreamHandler = answer;

  constructor() {
    this.server = net.createServer((socket) => {
      const connection = this.sockets.length;
      this.sockets.push(socket);
      socket.setNoDelay(true);
      socket.on("error", () => {});
      let buffered = "";
      let index = 0;
      socket.on("data", (chunk: Buffer) => {
        buffered += chunk.toString("latin1");
        for (let end = buffered.indexOf("\r\n\r\n"); end >= 0; end = buffered.indexOf("\r\n\r\n")) {
          const head = buffered.slice(0, end);
          buffered = buffered.slice(end + 4);
          const { first, headers } = parseHead(head);
          const [method, target] = first.split(" ") as [string, string];
          const request = { head, method, target, headers, connection, index: index++ };
          this.requests.push(request);
          this.handler(socket, request);
        }
      });
    });
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }
}

/** A response as the client read it off the wire. */
interface ClientResponse {
  status: number;
  head: string;
  headers: Record<string, string>;
  /** The body as framed on the wire (chunked framing included). */
  raw: Buffer;
  /** The body with chunked framing removed. */
  body: Buffer;
}

/** Decodes a chunked body at `start`: its end and data, or null when it is not all there yet. */
function dechunk(buf: Buffer, start: number): { end: number; data: Buffer } | null {
  const parts: Buffer[] = [];
  let at = start;
  for (;;) {
    const eol = buf.indexOf("\r\n", at);
    if (eol < 0) return null;
    const size = Number.parseInt(buf.toString("latin1", at, eol).split(";")[0]!, 16);
    if (Number.isNaN(size)) throw new Error(`bad chunk size line: ${buf.toString("latin1", at, eol)}`);
    at = eol + 2;
    if (size === 0) {
      // Trailers, up to an empty line.
      for (;;) {
        const tl = buf.indexOf("\r\n", at);
        if (tl < 0) return null;
        const empty = tl === at;
        at = tl + 2;
        if (empty) return { end: at, data: Buffer.concat(parts) };
      }
    }
    if (buf.length < at + size + 2) return null;
    parts.push(buf.subarray(at, at + size));
    if (buf.toString("latin1", at + size, at + size + 2) !== "\r\n")
      throw new Error("no CRLF after chunk data");
    at += size + 2;
  }
}

/** A raw client connection that reads responses one by one, framing them as an HTTP/1.1 client would. */
class Client {
  readonly socket: net.Socket;
  #chunks: Buffer[] = [];
  ended = false;
  #wake: (() => void) | null = null;

  constructor(port: number) {
    this.socket = net.connect(port, "127.0.0.1");
    this.socket.on("error", () => {});
    this.socket.on("data", (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#wake?.();
    });
    this.socket.on("close", () => {
      this.ended = true;
      this.#wake?.();
    });
  }

  write(text: string | Buffer): void {
    this.socket.write(typeof text === "string" ? Buffer.from(text, "latin1") : text);
  }

  /** Everything received and not yet read as a response. */
  get pending(): Buffer {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0] ?? Buffer.alloc(0);
  }

  async #more(): Promise<void> {
    if (this.ended)
      throw new Error(`connection closed; unread: ${JSON.stringify(this.pending.toString("latin1"))}`);
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
    });
    this.#wake = null;
  }

  /** The next response, for a request with `method`. */
  async response(method = "GET"): Promise<ClientResponse> {
    for (;;) {
      const buf = this.pending;
      const parsed = this.#parse(buf, method);
      if (parsed) {
        this.#chunks = [buf.subarray(parsed.end)];
        return parsed.response;
      }
      await this.#more();
    }
  }

  #parse(buf: Buffer, method: string): { end: number; response: ClientResponse } | null {
    const headEnd = buf.indexOf("\r\n\r\n");
    if (headEnd < 0) return null;
    const head = buf.toString("latin1", 0, headEnd);
    const { first, headers } = parseHead(head);
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(first);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(first)}`);
    const status = Number(m[1]);
    const start = headEnd + 4;
    const done = (end: number, body?: Buffer) => {
      const raw = buf.subarray(start, end);
      return { end, response: { status, head, headers, raw, body: body ?? raw } };
    };
    if (method === "HEAD" || status < 200 || status === 204 || status === 304) return done(start);
    if (headers["transfer-encoding"] === "chunked") {
      const chunked = dechunk(buf, start);
      return chunked && done(chunked.end, chunked.data);
    }
    if (headers["content-length"] !== undefined) {
      const end = start + Number(headers["content-length"]);
      return buf.length >= end ? done(end) : null;
    }
    return this.ended ? done(buf.length) : null;
  }

  /** Resolves once the relay closed the connection (EOF or reset). */
  async closed(): Promise<void> {
    while (!this.ended) await this.#more().catch(() => {});
  }
}

const get = (target: string, extra = "") => `GET ${target} HTTP/1.1\r\nHost: ${HOST}\r\n${extra}\r\n`;

/** Resolves on the socket's 'close' (its 'error', a reset, is expected on the way). */
const closeOf = (socket: net.Socket) => new Promise<void>((resolve) => socket.once("close", () => resolve()));

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe.each([
  { reads: "a new buffer per read", onread: undefined },
  { reads: "reused read buffers (boxnet/upstream-reads.ts), as the gateway dials", onread: UPSTREAM_ONREAD },
])("ByteRelay, reading the dev server into $reads", ({ onread }) => {
  const cleanups: Array<() => unknown> = [];

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** The harness: node:http server with the relay attached, the scripted upstream, and a client factory. */
  async function setup(options: Partial<ByteRelayOptions> = {}) {
    const upstream = new Upstream();
    upstream.server.listen(0, "127.0.0.1");
    await once(upstream.server, "listening");
    cleanups.push(async () => {
      for (const s of upstream.sockets) s.destroy();
      await new Promise((resolve) => upstream.server.close(resolve));
    });

    const server = http.createServer((req, res) => {
      let length = 0;
      req.on("data", (chunk: Buffer) => {
        length += chunk.length;
      });
      req.on("end", () => res.end(`node: ${req.method} ${req.url} ${length}`));
    });
    // node:http's own connection handler, wrapped before the relay takes it: the sockets handed to it.
    const handedOver: net.Socket[] = [];
    const [httpConnection] = server.listeners("connection") as Array<(socket: net.Socket) => void>;
    server.removeAllListeners("connection");
    server.on("connection", (socket: net.Socket) => {
      handedOver.push(socket);
      httpConnection!.call(server, socket);
    });
    const served: number[] = [];
    const failures: Error[] = [];
    const admitted: Array<{ requestHead: string }> = [];
    const relay = new ByteRelay({
      dial: ({ upstream }) =>
        new Promise<net.Socket>((resolve, reject) => {
          const socket = net.connect({ port: upstream.port, host: "127.0.0.1", onread });
          socket.once("connect", () => resolve(socket));
          socket.once("error", reject);
        }),
      admit: (head, client) => {
        if (head.host !== HOST) return null;
        const requestHead = forwardedRequestHead(head, {
          remoteAddress: client.remoteAddress,
          proto: "http",
        });
        admitted.push({ requestHead });
        const exchange: RelayExchange = {
          upstream: { host: "box", port: upstream.port },
          requestHead,
          responseHead: (response, close, keepAliveSeconds) =>
            forwardedResponseHead(response, close, keepAliveSeconds, (location) => location),
          failed: (err) => {
            failures.push(err);
            return { status: 502, html: `<p>upstream failed: ${err.message}</p>` };
          },
          served: (status) => served.push(status),
        };
        return exchange;
      },
      ...options,
    });
    relay.attach(server);
    /** The server side of every client connection, to see what the relay buffers towards the client. */
    const accepted: net.Socket[] = [];
    server.on("connection", (socket: net.Socket) => accepted.push(socket));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const clients: Client[] = [];
    cleanups.push(async () => {
      relay.close();
      for (const c of clients) c.socket.destroy();
      server.closeAllConnections();
      for (const s of accepted) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    });
    const port = (server.address() as AddressInfo).port;
    const client = async () => {
      const c = new Client(port);
      clients.push(c);
      await once(c.socket, "connect");
      return c;
    };
    return { upstream, server, relay, served, failures, admitted, accepted, handedOver, port, client };
  }

  it("answers two GETs on one keep-alive connection over one upstream connection, without hop-by-hop fields", async () => {
    const { upstream, server, served, port } = await setup();
    upstream.handler = (socket, req) => {
      const body = `up: ${req.target}`;
      socket.write(
        `HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=17\r\nX-Hop: 1\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
    };
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(() => agent.destroy());
    const fetchOne = (path: string) =>
      new Promise<{ status: number; headers: IncomingHttpHeaders; body: string; socket: net.Socket }>(
        (resolve, reject) => {
          const req = http.request(
            { port, host: "127.0.0.1", path, agent, headers: { host: HOST, "keep-alive": "timeout=5" } },
            (res) => {
              let body = "";
              res.setEncoding("latin1");
              res.on("data", (d: string) => {
                body += d;
              });
              res.on("end", () =>
                resolve({ status: res.statusCode!, headers: res.headers, body, socket: req.socket! }),
              );
            },
          );
          req.on("error", reject);
          req.end();
        },
      );
    const one = await fetchOne("/one");
    const two = await fetchOne("/two?x=1");
    expect([one.status, one.body]).toEqual([200, "up: /one"]);
    expect([two.status, two.body]).toEqual([200, "up: /two?x=1"]);
    expect(two.socket).toBe(one.socket);
    // One upstream connection, used twice.
    expect(upstream.sockets).toHaveLength(1);
    expect(upstream.requests.map((r) => [r.connection, r.index, r.target])).toEqual([
      [0, 0, "/one"],
      [0, 1, "/two?x=1"],
    ]);
    await waitFor("served twice", () => served.length === 2);
    expect(served).toEqual([200, 200]);
    // The dev server's hop-by-hop fields go neither way (the exchange's sanitizers drop them).
    for (const req of upstream.requests) {
      expect(req.headers.connection).toBeUndefined();
      expect(req.headers["keep-alive"]).toBeUndefined();
      expect(req.headers.host).toBe(HOST);
    }
    for (const res of [one, two]) {
      // The relay's own keep-alive hint (the server's keepAliveTimeout, as node:http sends it), not the dev server's.
      expect(res.headers["keep-alive"]).toBe(`timeout=${Math.floor(server.keepAliveTimeout / 1000)}`);
      expect(res.headers["x-hop"]).toBeUndefined();
      // Node's client reports the connection as kept: no Connection: close from the relay.
      expect(res.headers.connection).toBeUndefined();
      expect(res.headers["content-length"]).toBe(String(res.body.length));
    }
  });

  it("hands a POST to node:http with its body, on a fresh connection and after a relayed GET", async () => {
    const { upstream, client, served } = await setup();
    const body = Buffer.alloc(100_000, "b");
    const post = (path: string) =>
      Buffer.concat([
        Buffer.from(`POST ${path} HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${body.length}\r\n\r\n`),
        body,
      ]);

    const fresh = await client();
    fresh.write(post("/upload"));
    const first = await fresh.response();
    expect(first.status).toBe(200);
    expect(first.body.toString()).toBe("node: POST /upload 100000");

    const mixed = await client();
    mixed.write(get("/page"));
    const relayed = await mixed.response();
    expect(relayed.body.toString()).toBe("up: /page");
    mixed.write(post("/after"));
    const handed = await mixed.response();
    expect(handed.body.toString()).toBe("node: POST /after 100000");
    // node:http owns the connection now: a GET for the relay's host is node's to answer too.
    mixed.write(get("/later"));
    expect((await mixed.response()).body.toString()).toBe("node: GET /later 0");
    expect(upstream.requests.map((r) => r.target)).toEqual(["/page"]);
    expect(served).toEqual([200]);
  });

  it("answers two pipelined GETs in order, each complete", async () => {
    const { upstream, client } = await setup();
    const c = await client();
    c.write(get("/first") + get("/second"));
    const a = await c.response();
    const b = await c.response();
    expect([a.status, a.body.toString()]).toEqual([200, "up: /first"]);
    expect([b.status, b.body.toString()]).toEqual([200, "up: /second"]);
    expect(c.pending.length).toBe(0);
    expect(upstream.requests.map((r) => r.target)).toEqual(["/first", "/second"]);
  });

  it("relays a chunked response written one byte at a time, and reuses its upstream connection", async () => {
    const { upstream, client } = await setup();
    const chunked = "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: yes\r\n\r\n";
    upstream.handler = (socket, req) => {
      if (req.connection > 1 || req.index > 0) return answer(socket, req);
      const bytes = Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`, "latin1");
      void (async () => {
        for (let i = 0; i < bytes.length; i++) {
          socket.write(bytes.subarray(i, i + 1));
          await nextTick();
        }
      })();
    };
    const c = await client();
    c.write(get("/chunks"));
    const res = await c.response();
    expect(res.headers["transfer-encoding"]).toBe("chunked");
    expect(res.headers["content-length"]).toBeUndefined();
    expect(res.body.toString()).toBe("Wikipedia in\r\n\r\nchunks.");
    // The body's bytes pass through unchanged, extensions and trailers included.
    expect(res.raw.toString("latin1")).toBe(chunked);
    c.write(get("/next"));
    expect((await c.response()).body.toString()).toBe("up: /next");
    expect(upstream.sockets).toHaveLength(1);
  });

  it("relays a close-delimited response with Connection: close, then closes the client connection", async () => {
    const { upstream, client, served } = await setup();
    const body = "x".repeat(50_000);
    upstream.handler = (socket) => {
      socket.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
      socket.write(body.slice(0, 20_000));
      setImmediate(() => socket.end(body.slice(20_000)));
    };
    const c = await client();
    c.write(get("/stream"));
    const res = await c.response();
    expect(res.headers.connection).toBe("close");
    expect(res.body.toString()).toBe(body);
    await c.closed();
    expect(served).toEqual([200]);
  });

  it("closes the connection after a Connection: close response although the client keeps its side open", async () => {
    const { port, accepted, served } = await setup();
    // allowHalfOpen: the client's socket does not end its side when the relay's FIN arrives.
    const socket = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    cleanups.push(() => socket.destroy());
    await once(socket, "connect");
    const received: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => received.push(chunk));
    const ended = once(socket, "end");
    socket.write(get("/a", "Connection: close\r\n"));
    await ended;
    expect(Buffer.concat(received).toString("latin1")).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    // Not left half-open for as long as the client likes: the sweep leaves a closing connection alone.
    await waitFor("the relay's side of the connection closed", () => accepted[0]!.destroyed, 10_000);
    expect(served).toEqual([200]);
  });

  it("frees a connection the client reset during its admission, rather than hand it to node:http", async () => {
    let refuse: ((err: Error) => void) | undefined;
    const { client, accepted, handedOver } = await setup({
      admit: () =>
        new Promise<RelayExchange | null>((_resolve, reject) => {
          refuse = reject;
        }),
    });
    const c = await client();
    c.write(get("/a"));
    await waitFor("the admission to start", () => refuse !== undefined);
    const gone = closeOf(accepted[0]!);
    c.socket.resetAndDestroy();
    await gone;
    // Admission fails only now (the database unreachable, say), which hands a request to node:http: a
    // socket whose 'close' has passed would get a parser that nothing ever frees.
    refuse!(new Error("database unreachable"));
    await nextTick();
    expect(handedOver).toEqual([]);
  });

  it("answers 502 to a response with both Content-Length and Transfer-Encoding, and serves the next request", async () => {
    const { upstream, client, served, failures } = await setup();
    upstream.handler = (socket, req) => {
      if (req.target === "/next") return answer(socket, req);
      socket.write(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      );
    };
    const c = await client();
    c.write(get("/smuggle"));
    const res = await c.response();
    expect(res.status).toBe(502);
    expect(res.body.toString()).toMatch(/^<p>upstream failed: dev server response: Transfer-Encoding/);
    expect(res.headers["content-length"]).toBe(String(res.body.length));
    expect(failures).toHaveLength(1);
    c.write(get("/next"));
    const next = await c.response();
    expect([next.status, next.body.toString()]).toEqual([200, "up: /next"]);
    // The offending connection was not reused.
    expect(upstream.requests.find((r) => r.target === "/next")?.connection).toBe(1);
    expect(served).toEqual([502, 200]);
  });

  it("retries once on a fresh connection when a pooled one closes as the next request arrives", async () => {
    const { upstream, client, served } = await setup();
    upstream.handler = (socket, req) => {
      // The dev server's keep-alive ran out just as the second request came: it goes without an answer.
      if (req.connection === 0 && req.index === 1) socket.destroy();
      else answer(socket, req);
    };
    const c = await client();
    c.write(get("/a"));
    expect((await c.response()).body.toString()).toBe("up: /a");
    c.write(get("/b"));
    const res = await c.response();
    expect([res.status, res.body.toString()]).toEqual([200, "up: /b"]);
    expect(upstream.requests.map((r) => [r.connection, r.target])).toEqual([
      [0, "/a"],
      [0, "/b"],
      [1, "/b"],
    ]);
    expect(served).toEqual([200, 200]);
  });

  it("closes the upstream connection when the client leaves mid-body", async () => {
    const { upstream, client, served } = await setup();
    const piece = Buffer.alloc(64 * 1024, "z");
    upstream.handler = (socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${1024 * 1024 * 1024}\r\n\r\n`);
      const pump = () => {
        while (!socket.destroyed && socket.write(piece));
      };
      socket.on("drain", pump);
      pump();
    };
    const c = await client();
    c.write(get("/huge"));
    await waitFor("part of the body", () => c.pending.length > 200_000);
    const upSocket = upstream.sockets[0]!;
    const upClosed = closeOf(upSocket);
    c.socket.destroy();
    await upClosed;
    await waitFor("served 499", () => served.includes(499));
  });

  it("stops reading the upstream while the client does not read (backpressure), then relays 32 MB intact", async () => {
    const { upstream, client, accepted } = await setup();
    const size = 32 * 1024 * 1024;
    const body = randomBytes(size);
    const expected = createHash("sha256").update(body).digest("hex");
    upstream.handler = (socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`);
      socket.write(body);
    };
    const c = await client();
    c.socket.pause();
    c.write(get("/big"));
    await waitFor("the upstream connection", () => upstream.sockets.length === 1);
    const upSocket = upstream.sockets[0]!;
    await waitFor(
      "the upstream blocked on the paused client",
      () => upSocket.writableLength > 8 * 1024 * 1024,
      10_000,
      20,
    );
    // What the relay holds for the client stays small: it stopped reading instead of buffering.
    const relaySide = accepted[0]!;
    expect(relaySide.writableLength).toBeLessThan(1024 * 1024);

    const hash = createHash("sha256");
    let head = Buffer.alloc(0);
    let received = 0;
    let headLength = -1;
    c.socket.removeAllListeners("data");
    const done = new Promise<void>((resolve, reject) => {
      c.socket.on("data", (chunk: Buffer) => {
        if (headLength < 0) {
          head = Buffer.concat([head, chunk]);
          const end = head.indexOf("\r\n\r\n");
          if (end < 0) return;
          headLength = end + 4;
          chunk = head.subarray(headLength);
          if (!head.toString("latin1", 0, end).includes(`content-length: ${size}`)) {
            reject(new Error(`unexpected head: ${head.toString("latin1", 0, end)}`));
          }
        }
        received += chunk.length;
        hash.update(chunk);
        if (received > size) reject(new Error(`more than ${size} bytes`));
        if (received === size) resolve();
      });
    });
    c.socket.resume();
    await done;
    expect(received).toBe(size);
    expect(hash.digest("hex")).toBe(expected);
  });

  it("relays large and small bodies intact while the relay's writes queue behind a paused client (seeded)", async () => {
    // With reused read buffers, a view of a read that a write queued must never be read into again: a
    // large body is sent to a paused client until the relay's writes queue, then the client reads.
    const SEED = 0xb0d1;
    const r = prng(SEED);
    // The upstream's own sequence: its writes interleave with the test's turns in whatever order.
    const cut = prng(SEED + 1);
    const { upstream, port, accepted } = await setup();
    const bodies = new Map<string, Buffer>();
    upstream.handler = (socket, req) => {
      const body = bodies.get(req.target)!;
      void (async () => {
        // The head in two reads: the first must be kept as a copy, as the second may reuse its buffer. Two
        // turns of the event loop, so that the relay (in this process) polls and reads between the pieces.
        socket.write("HTTP/1.1 200 OK\r\nContent-");
        await nextTick();
        await nextTick();
        socket.write(`Length: ${body.length}\r\n\r\n`);
        // In pieces of up to 16 KB or up to 200 KB: the relay's reads both fill its buffers and fall short
        // of them, and a short one can queue behind the paused client without the write reporting it full.
        for (let at = 0; at < body.length; ) {
          const n = 1 + Math.floor(cut() * (cut() < 0.5 ? 16_000 : 200_000));
          socket.write(body.subarray(at, at + n));
          at += n;
          if (cut() < 0.5) await nextTick();
        }
      })();
    };
    /** The bodies of the responses in `wire`, in order (Content-Length framed), or null while incomplete. */
    const bodiesOf = (wire: Buffer, count: number): Buffer[] | null => {
      const out: Buffer[] = [];
      let at = 0;
      while (out.length < count) {
        const end = wire.indexOf("\r\n\r\n", at);
        if (end < 0) return null;
        const length = Number(/content-length: (\d+)/.exec(wire.toString("latin1", at, end))?.[1]);
        if (wire.length < end + 4 + length) return null;
        out.push(wire.subarray(end + 4, end + 4 + length));
        at = end + 4 + length;
      }
      return at === wire.length ? out : null;
    };
    for (let pair = 0; pair < 8; pair++) {
      // A large body, beyond what the kernel buffers on a fresh connection whose client never read (its
      // receive buffer grows only as the client reads; the relay's send buffer grows to 4 MB at most), then
      // a small one on the same connection once the client has read it all: the relay's pooled upstream
      // connection reads the small one's split head into the buffer the large one left (the client's queue
      // is empty by then, so the relay hands over views, not copies).
      const large = randomBytes(6_000_000 + Math.floor(r() * 2_000_000));
      const small = randomBytes(Math.floor(r() * 3_000));
      bodies.set(`/${pair}/large`, large);
      bodies.set(`/${pair}/small`, small);
      const socket = net.connect(port, "127.0.0.1");
      cleanups.push(() => socket.destroy());
      socket.pause();
      await once(socket, "connect");
      await waitFor("the relay's side of the client connection", () => accepted.length === pair + 1);
      const relaySide = accepted[pair]!;
      const chunks: Buffer[] = [];
      let received = 0;
      socket.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
      });
      /** Resolves, on the 'data' event that completes them (no polling delay), with the first `count` bodies. */
      const responses = (count: number, atLeast: number) =>
        new Promise<Buffer[]>((resolve, reject) => {
          const timer = setTimeout(() => {
            socket.off("data", check);
            reject(new Error(`${count} response(s) not complete after 20 s (${received} bytes received)`));
          }, 20_000);
          const check = () => {
            const got = received >= atLeast ? bodiesOf(Buffer.concat(chunks), count) : null;
            if (!got) return;
            clearTimeout(timer);
            socket.off("data", check);
            resolve(got);
          };
          socket.on("data", check);
        });
      socket.write(get(`/${pair}/large`));
      await waitFor(
        "the relay's writes queued behind the paused client",
        () => relaySide.writableLength > 0,
        20_000,
      );
      const first = responses(1, large.length);
      socket.resume();
      await first;
      const both = responses(2, large.length + small.length);
      socket.write(get(`/${pair}/small`));
      const got = await both;
      socket.destroy();
      const label = `seed ${SEED}, pair ${pair} (${large.length} and ${small.length} bytes)`;
      expect(got[0]!.equals(large), label).toBe(true);
      expect(got[1]!.equals(small), label).toBe(true);
    }
  });

  it("relays a HEAD answer's Content-Length without a body, and a 304, then serves the next request", async () => {
    const { upstream, client } = await setup();
    upstream.handler = (socket, req) => {
      if (req.method === "HEAD") socket.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
      else if (req.headers["if-none-match"]) socket.write('HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n');
      else answer(socket, req);
    };
    const c = await client();
    c.write(`HEAD /h HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    const head = await c.response("HEAD");
    expect(head.status).toBe(200);
    expect(head.headers["content-length"]).toBe("5");
    c.write(get("/after-head"));
    const a = await c.response();
    expect(a.body.toString()).toBe("up: /after-head");

    c.write(get("/cached", 'If-None-Match: "v1"\r\n'));
    const cached = await c.response();
    expect(cached.status).toBe(304);
    expect(cached.headers.etag).toBe('"v1"');
    c.write(get("/after-304"));
    const b = await c.response();
    expect(b.body.toString()).toBe("up: /after-304");
    expect(c.pending.length).toBe(0);
    expect(upstream.sockets).toHaveLength(1);
  });

  it("never reuses an upstream connection that sent bytes beyond a response, whether with its head or later", async () => {
    const { upstream, client } = await setup();
    // The first answer on each of the first two connections carries a forged second response behind its
    // body: in the same write as its head, or in a write of its own once the client has the head.
    const forged = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged";
    let later: net.Socket | null = null;
    upstream.handler = (socket, req) => {
      if (req.connection > 1 || req.index > 0) answer(socket, req);
      else if (req.connection === 0) socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok${forged}`);
      else {
        socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
        later = socket;
      }
    };
    const c = await client();
    c.write(get("/a"));
    expect((await c.response()).body.toString()).toBe("ok");
    c.write(get("/b"));
    await waitFor("the head of /b's answer", () => c.pending.includes("\r\n\r\n"));
    later!.write(`ok${forged}`);
    expect((await c.response()).body.toString()).toBe("ok");
    c.write(get("/c"));
    expect((await c.response()).body.toString()).toBe("up: /c");
    // Each of the first two answers cost its connection: every request went out on a fresh one.
    expect(upstream.requests.map((r) => [r.connection, r.index])).toEqual([
      [0, 0],
      [1, 0],
      [2, 0],
    ]);
    expect(c.pending.length).toBe(0);
  });

  it("drops a 103 Early Hints and relays only the final 200", async () => {
    const { upstream, client } = await setup();
    upstream.handler = (socket, req) => {
      socket.write("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n");
      setImmediate(() => answer(socket, req));
    };
    const c = await client();
    c.write(get("/hints"));
    const res = await c.response();
    expect(res.status).toBe(200);
    expect(res.head.startsWith("HTTP/1.1 200 ")).toBe(true);
    expect(res.headers.link).toBeUndefined();
    expect(res.body.toString()).toBe("up: /hints");
    expect(c.pending.length).toBe(0);
  });

  it("answers 504 when the upstream sends no head within upstreamHeadTimeoutMs", async () => {
    const { upstream, client, served } = await setup({ upstreamHeadTimeoutMs: 300 });
    upstream.handler = () => {};
    const c = await client();
    const started = Date.now();
    c.write(get("/silent"));
    const res = await c.response();
    expect(res.status).toBe(504);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(served).toEqual([504]);
    await waitFor("the late upstream connection closed", () => upstream.sockets[0]?.destroyed);
  });

  it("close() destroys held client and upstream connections", async () => {
    const { upstream, client, relay } = await setup();
    upstream.handler = (socket, req) => {
      if (req.target !== "/stuck") answer(socket, req);
    };
    // A client between requests, over an upstream connection that goes back to the pool...
    const idle = await client();
    idle.write(get("/a"));
    await idle.response();
    // ...which a second client's request takes, and the upstream never answers...
    const waiting = await client();
    waiting.write(get("/stuck"));
    await waitFor("the stuck request upstream", () => upstream.requests.length === 2);
    // ...so a third client's request dials a second connection, which is pooled again after its answer.
    const third = await client();
    third.write(get("/c"));
    await third.response();
    expect(upstream.requests.map((r) => [r.connection, r.target])).toEqual([
      [0, "/a"],
      [0, "/stuck"],
      [1, "/c"],
    ]);
    const upClosed = upstream.sockets.map(closeOf);
    relay.close();
    await Promise.all([idle.closed(), waiting.closed(), third.closed(), ...upClosed]);
  });

  it("leaves connections that arrive after close() to node:http", async () => {
    const { relay, client, handedOver, upstream } = await setup();
    relay.close();
    const c = await client();
    c.write(get("/a"));
    expect((await c.response()).body.toString()).toBe("node: GET /a 0");
    expect(handedOver).toHaveLength(1);
    expect(upstream.requests).toEqual([]);
  });

  it("fails a request waiting for a pooled connection when the dial it waited on fails", async () => {
    const dials: Array<(err: Error) => void> = [];
    const { client, admitted, served } = await setup({
      connectionsPerUpstream: 1,
      dial: () => new Promise<net.Socket>((_resolve, reject) => dials.push(reject)),
    });
    const a = await client();
    const b = await client();
    a.write(get("/a"));
    await waitFor("the first dial", () => dials.length === 1);
    // The second request waits: the dev server's one connection is being dialled.
    b.write(get("/b"));
    await waitFor("both admitted", () => admitted.length === 2);
    dials[0]!(new Error("connect ECONNREFUSED"));
    expect((await a.response()).status).toBe(502);
    // The waiting request is not left waiting for a connection that will never exist: it dials its own.
    await waitFor("a dial for the waiting request", () => dials.length === 2, 3_000);
    dials[1]!(new Error("connect ECONNREFUSED"));
    expect((await b.response()).status).toBe(502);
    expect(served).toEqual([502, 502]);
  });

  it("relays random request sequences and framings in random pieces exactly (seeded fuzz)", async () => {
    const SEED = 0x5eed;
    const ROUNDS = 200;
    const { upstream, client } = await setup();
    const r = prng(SEED);
    const int = (n: number) => Math.floor(r() * n);
    const PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%/?=&";

    interface Plan {
      method: "GET" | "HEAD";
      framing: "length" | "chunked" | "head";
      body: Buffer;
      /** The response's bytes on the wire. */
      wire: Buffer;
      /** How the upstream writes them, and after which pieces it lets the event loop turn. */
      pieces: number[];
      yields: boolean[];
    }
    const plans = new Map<string, Plan>();

    const pieces = (length: number): number[] => {
      const out: number[] = [];
      for (let left = length; left > 0; ) {
        const n = Math.min(left, 1 + int(r() < 0.3 ? 4 : 600));
        out.push(n);
        left -= n;
      }
      return out;
    };

    const plan = (method: "GET" | "HEAD"): Plan => {
      const body = Buffer.from(
        Array.from({ length: int(2_000) }, () => String.fromCharCode(int(256))).join(""),
        "latin1",
      );
      let head: string;
      let payload: Buffer;
      let framing: Plan["framing"];
      if (method === "HEAD") {
        framing = "head";
        head = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`;
        payload = Buffer.alloc(0);
      } else if (r() < 0.5) {
        framing = "length";
        head = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`;
        payload = body;
      } else {
        framing = "chunked";
        head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        const parts: Buffer[] = [];
        for (let at = 0; at < body.length; ) {
          const n = Math.min(body.length - at, 1 + int(300));
          const ext = r() < 0.2 ? ";e=1" : "";
          parts.push(
            Buffer.from(`${n.toString(16)}${ext}\r\n`),
            body.subarray(at, at + n),
            Buffer.from("\r\n"),
          );
          at += n;
        }
        parts.push(Buffer.from(r() < 0.3 ? "0\r\nX-T: 1\r\n\r\n" : "0\r\n\r\n"));
        payload = Buffer.concat(parts);
      }
      const wire = Buffer.concat([Buffer.from(head, "latin1"), payload]);
      const cuts = pieces(wire.length);
      return { method, framing, body, wire, pieces: cuts, yields: cuts.map(() => r() < 0.5) };
    };

    upstream.handler = (socket, req) => {
      const p = plans.get(req.target);
      if (!p) throw new Error(`unplanned request ${req.target}`);
      void (async () => {
        let at = 0;
        for (const [i, n] of p.pieces.entries()) {
          socket.write(p.wire.subarray(at, at + n));
          at += n;
          if (p.yields[i]) await nextTick();
        }
      })();
    };

    for (let round = 0; round < ROUNDS; round++) {
      const count = 1 + int(5);
      const sequence: Array<{ target: string; plan: Plan }> = [];
      for (let i = 0; i < count; i++) {
        const path = Array.from({ length: int(30) }, () => PATH_CHARS[int(PATH_CHARS.length)]).join("");
        const target = `/r${round}/${i}/${path}`;
        const p = plan(r() < 0.25 ? "HEAD" : "GET");
        plans.set(target, p);
        sequence.push({ target, plan: p });
      }
      const requests = Buffer.from(
        sequence
          .map(({ target, plan: p }) => `${p.method} ${target} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`)
          .join(""),
        "latin1",
      );
      const c = await client();
      for (let at = 0; at < requests.length; ) {
        const n = 1 + int(r() < 0.3 ? 8 : 200);
        c.write(requests.subarray(at, at + n));
        at += n;
        if (r() < 0.5) await nextTick();
      }
      for (const [i, { target, plan: p }] of sequence.entries()) {
        const label = `seed ${SEED}, round ${round}, response ${i} (${p.method} ${target}, ${p.framing})`;
        const res = await c.response(p.method);
        expect(res.status, label).toBe(200);
        if (p.framing === "chunked") {
          expect(res.headers["transfer-encoding"], label).toBe("chunked");
          expect(res.raw.equals(p.wire.subarray(p.wire.indexOf("\r\n\r\n") + 4)), label).toBe(true);
        } else {
          expect(res.headers["content-length"], label).toBe(String(p.body.length));
        }
        const expectedBody = p.framing === "head" ? Buffer.alloc(0) : p.body;
        expect(res.body.equals(expectedBody), label).toBe(true);
      }
      expect(c.pending.length, `round ${round}: extra bytes`).toBe(0);
      c.socket.destroy();
    }
    expect(upstream.requests).toHaveLength(plans.size);
  });
});
