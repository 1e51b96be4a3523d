/**
 * The preview proxy's byte relay: host-form GET and HEAD requests forwarded between the client's TCP
 * connection and a pooled connection to the dev server, with heads parsed and rewritten by http1.ts and
 * bodies passed through as bytes. It takes the connections of the control plane's HTTP server before
 * Node's HTTP stack sees them (`attach`): that stack (an IncomingMessage and a ServerResponse per request,
 * and undici's client towards the dev server) cost about three times nginx's CPU per small request, and a
 * Vite page is hundreds of them.
 *
 * The relay forwards only what it fully understands: a request head that http1.ts does not accept, or one
 * the gateway does not admit (refusals, the sign-in paths, the API, path-form previews, upgrades), hands
 * the connection to Node's HTTP server with the bytes read so far put back, and Node owns it from then on.
 * One request at a time per connection: pipelined requests wait, unparsed, until the response before them
 * has ended.
 *
 * Per request the relay allocates little and registers no listener or timer: each connection's listeners
 * are set once, and one sweep a second enforces the timeouts (keep-alive, head, dev server's answer).
 */
import { type Server, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { attachUpstreamReads } from "../../boxnet/upstream-reads.ts";
import { releaseClientReads, takeClientReads } from "./client-reads.ts";
import {
  ChunkedBodyTracker,
  MAX_HEAD_BYTES,
  parseRequestHead,
  parseResponseHead,
  type RequestHead,
  type ResponseHead,
} from "./http1.ts";

/** What the gateway decided for one admitted request. */
export interface RelayExchange {
  /** The dev server's pool key and port (from `UpstreamAgent.target()`: names the box, never an address). */
  upstream: { host: string; port: number };
  /** The request head to send the dev server (`serializeRequestHead`, with the gateway's rewriting). */
  requestHead: string;
  /**
   * The response head to send the client (`serializeResponseHead` with these arguments, and the gateway's
   * rewriting); throwing makes the response a 502.
   */
  responseHead(head: ResponseHead, close: boolean, keepAliveSeconds: number): string;
  /** The dev server could not be reached, or failed before its head: the page to answer with. */
  failed(err: Error): { status: number; html: string };
  /** The response has ended (or failed); for the request metrics. */
  served(status: number): void;
}

export interface ByteRelayOptions<E extends RelayExchange = RelayExchange> {
  /**
   * A new connection to `exchange.upstream` (`UpstreamAgent.dial`), made for that exchange: the gateway
   * checks, per exchange, what it may dial.
   */
  dial(exchange: E): Promise<Socket>;
  /**
   * Admits a request head: its exchange, or null to leave the request (and the connection) to Node's HTTP
   * server, which answers it as the gateway's lean path and Koa do. `previous` is the last exchange
   * admitted on this connection, for the gateway to reuse its decision when nothing it rests on changed.
   */
  admit(head: RequestHead, client: Socket, previous: E | null): E | null | Promise<E | null>;
  /** Connections per dev server, as undici's pool had (beyond it, requests wait for one to be free). */
  connectionsPerUpstream?: number;
  /** Waiting for the dev server's response head (undici's default headersTimeout). */
  upstreamHeadTimeoutMs?: number;
  /** An idle pooled connection to a dev server is closed after this long (undici's keep-alive default). */
  upstreamIdleMs?: number;
}

const SWEEP_MS = 1_000;
/** Up to this much of a body that came with its response head is copied behind the head, for one write. */
const MERGED_BODY_BYTES = 16 * 1024;

export class ByteRelay<E extends RelayExchange = RelayExchange> {
  readonly options: Required<ByteRelayOptions<E>>;
  readonly pool: UpstreamPool<E>;
  readonly #clients = new Set<ClientConnection<E>>();
  keepAliveTimeoutMs = 5_000;
  headersTimeoutMs = 60_000;
  #sweeper: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(options: ByteRelayOptions<E>) {
    this.options = {
      connectionsPerUpstream: 256,
      upstreamHeadTimeoutMs: 300_000,
      upstreamIdleMs: 4_000,
      ...options,
    };
    this.pool = new UpstreamPool(options.dial, this.options.connectionsPerUpstream);
  }

  /**
   * Takes `server`'s new connections: each is read here first and handed to the server's own connection
   * handling (Node's HTTP parser) when the relay does not forward its request. The server's keep-alive
   * and header timeouts apply to the connections the relay keeps.
   */
  attach(server: Server): void {
    const listeners = server.listeners("connection");
    // node:http registers exactly one: its own connection handler. Anything else means this Node works
    // differently from the one the relay was written for; better to fail at start than to lose requests.
    if (listeners.length !== 1) {
      throw new Error(`expected node:http's one 'connection' listener, found ${listeners.length}`);
    }
    const http = listeners[0] as (socket: Socket) => void;
    server.removeAllListeners("connection");
    this.keepAliveTimeoutMs = server.keepAliveTimeout;
    this.headersTimeoutMs = server.headersTimeout;
    server.on("connection", (socket: Socket) => {
      // Stopped (the server is closing): what still arrives is node:http's, as without the relay.
      if (this.#closed) {
        http.call(server, socket);
        return;
      }
      const forget = () => this.#clients.delete(client);
      const client = new ClientConnection(this, socket, (bytes) => {
        forget();
        // Nothing of the relay's stays on a connection node:http owns (a WebSocket may stay for hours).
        socket.off("close", forget);
        // The socket is paused, and unshift puts the bytes in front of anything read later: Node's parser
        // reads the request from its first byte.
        if (bytes) socket.unshift(bytes);
        http.call(server, socket);
        socket.resume();
      });
      this.#clients.add(client);
      socket.once("close", forget);
      this.#sweeper ??= setInterval(() => this.#sweep(), SWEEP_MS).unref();
    });
  }

  /** Timeouts, once a second for every connection (no timer per request). */
  #sweep(): void {
    const now = Date.now();
    for (const client of this.#clients) client.checkTimeouts(now);
    this.pool.sweep(now, this.options.upstreamIdleMs, this.options.upstreamHeadTimeoutMs);
  }

  /** Ends every connection the relay holds (the server's close waits for them otherwise). */
  close(): void {
    this.#closed = true;
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = null;
    for (const client of this.#clients) client.socket.destroy();
    this.#clients.clear();
    this.pool.close();
  }
}

/** One client connection while the relay holds it. */
class ClientConnection<E extends RelayExchange> {
  readonly socket: Socket;
  readonly #relay: ByteRelay<E>;
  readonly #handover: (bytes: Buffer | null) => void;
  /** Bytes read and not yet consumed: the start of the next request head (or pipelined requests). */
  #buffered: Buffer | null = null;
  /** When the connection went idle, or the current partial head began (for the sweep's timeouts). */
  #since = Date.now();
  /** The request being admitted or answered: no other is parsed until it ends. */
  #busy = false;
  #exchange: Exchange<E> | null = null;
  /** The last exchange admitted here, offered to the gateway with the next request. */
  #previous: E | null = null;
  #handedOver = false;

  constructor(relay: ByteRelay<E>, socket: Socket, handover: (bytes: Buffer | null) => void) {
    this.#relay = relay;
    this.socket = socket;
    this.#handover = handover;
    // Reads into a shared buffer where this Node allows it (client-reads.ts), else 'data' events.
    if (!takeClientReads(socket, this.#onData)) socket.on("data", this.#onData);
    socket.on("end", this.#onEnd);
    socket.on("drain", this.#onDrain);
    socket.on("close", this.#onClose);
    // Errors end in 'close'.
    socket.on("error", noop);
  }

  readonly #onData = (chunk: Buffer): void => {
    if (!this.#buffered) this.#since = Date.now();
    this.#buffered = this.#buffered ? Buffer.concat([this.#buffered, chunk]) : chunk;
    if (!this.#busy) this.#next();
    // Pipelined bytes wait for the response in flight; more than a head's worth waits in the kernel.
    else if (this.#buffered.length > MAX_HEAD_BYTES) this.socket.pause();
  };

  /**
   * The client sent FIN. As Node's HTTP server does (httpAllowHalfOpen off), that ends the connection:
   * a request in flight is abandoned, and its upstream request stopped.
   */
  readonly #onEnd = (): void => {
    if (this.#busy || this.#buffered) this.socket.destroy();
    else this.socket.end();
  };

  readonly #onDrain = (): void => this.#exchange?.clientDrained();

  readonly #onClose = (): void => this.#exchange?.clientGone();

  checkTimeouts(now: number): void {
    if (this.#busy || this.#handedOver) return;
    const limit = this.#buffered ? this.#relay.headersTimeoutMs : this.#relay.keepAliveTimeoutMs;
    if (now - this.#since > limit) this.socket.destroy();
  }

  /** Parses the next request in the buffer, if any, and forwards it or hands the connection over. */
  #next(): void {
    const buffered = this.#buffered;
    if (!buffered) {
      this.#since = Date.now();
      this.socket.resume();
      return;
    }
    const parsed = parseRequestHead(buffered);
    if (parsed.kind === "handover") {
      this.#giveUp();
      return;
    }
    if (parsed.kind === "incomplete") {
      this.socket.resume();
      return;
    }
    this.#busy = true;
    const head = parsed.head;
    const decided = this.#relay.options.admit(head, this.socket, this.#previous);
    if (decided === null || !("then" in decided)) {
      this.#admitted(head, decided);
      return;
    }
    decided.then(
      (exchange) => this.#admitted(head, exchange),
      // Admission failed (the database unreachable): Node's side answers it, through Koa's error handling.
      () => this.#giveUp(),
    );
  }

  #admitted(head: RequestHead, exchange: E | null): void {
    if (this.socket.destroyed) return;
    if (!exchange) {
      this.#giveUp();
      return;
    }
    this.#previous = exchange;
    const rest = this.#buffered!.subarray(head.length);
    this.#buffered = rest.length ? rest : null;
    this.#since = Date.now();
    this.#exchange = new Exchange(this.#relay, this.socket, head, exchange, this);
    this.#exchange.send();
  }

  /** The exchange is over; the connection goes on to the next request unless it must close. */
  exchangeEnded(close: boolean): void {
    this.#exchange = null;
    if (close) {
      // As node:http does: closed once the response is written, whether or not the client ends its side
      // (the server allows half-open connections, and a client that never closed would keep it forever;
      // the sweep leaves a busy connection alone).
      this.socket.destroySoon();
      return;
    }
    this.#busy = false;
    this.#next();
  }

  /** Everything read so far goes back to the socket, and Node's HTTP server takes it. */
  #giveUp(): void {
    if (this.#handedOver) return;
    this.#handedOver = true;
    // A client that reset the connection, or half-closed it, while its request was being admitted: node:http
    // would set up a parser for a socket whose 'close' has already passed and never free it, and an ended
    // stream takes no bytes back (rare: a refused or failed admission, from a client that gave up on it).
    if (this.socket.destroyed || this.socket.readableEnded) {
      this.socket.destroy();
      return;
    }
    releaseClientReads(this.socket);
    this.socket.off("data", this.#onData);
    this.socket.off("end", this.#onEnd);
    this.socket.off("drain", this.#onDrain);
    this.socket.off("close", this.#onClose);
    this.socket.off("error", noop);
    this.socket.pause();
    const bytes = this.#buffered;
    this.#buffered = null;
    this.#handover(bytes);
  }
}

/** One request and its response, between the client and a pooled connection to the dev server. */
class Exchange<E extends RelayExchange> {
  readonly #pool: UpstreamPool<E>;
  /** The server's keep-alive timeout, announced to the client in each response that keeps the connection. */
  readonly #keepAliveMs: number;
  readonly #client: Socket;
  readonly #head: RequestHead;
  readonly #exchange: E;
  readonly #owner: ClientConnection<E>;
  #upstream: UpstreamConnection | null = null;
  #retried = false;
  #received: Buffer | null = null;
  #response: ResponseHead | null = null;
  #remaining = 0;
  #chunked: ChunkedBodyTracker | null = null;
  /** Whether anything of the response reached the client (then a failure can only close the connection). */
  #started = false;
  #finished = false;
  /** Whether the dev server's connection can serve another request once this response ends. */
  #upstreamReusable = true;

  constructor(
    relay: ByteRelay<E>,
    client: Socket,
    head: RequestHead,
    exchange: E,
    owner: ClientConnection<E>,
  ) {
    this.#pool = relay.pool;
    this.#keepAliveMs = relay.keepAliveTimeoutMs;
    this.#client = client;
    this.#head = head;
    this.#exchange = exchange;
    this.#owner = owner;
  }

  /** The client's socket: what the dev server's bytes are written to (the read buffer's holder). */
  get client(): Socket {
    return this.#client;
  }

  send(): void {
    const { host, port } = this.#exchange.upstream;
    const idle = this.#pool.idle(host, port);
    if (idle) {
      this.#use(idle);
      return;
    }
    this.#pool.open(this.#exchange).then(
      (upstream) => {
        // The client left while the connection was being made: it stays good for the next request.
        if (this.#finished) this.#pool.release(upstream, true);
        else this.#use(upstream);
      },
      (err: Error) => this.#fail(err, 502),
    );
  }

  #use(upstream: UpstreamConnection): void {
    this.#upstream = upstream;
    upstream.exchange = this;
    upstream.since = Date.now();
    upstream.socket.write(this.#exchange.requestHead, "latin1");
  }

  /** Bytes from the dev server. */
  upstreamData(chunk: Buffer): void {
    if (this.#finished) return;
    if (this.#response) {
      this.#body(chunk);
      return;
    }
    let received = this.#received ? Buffer.concat([this.#received, chunk]) : chunk;
    this.#received = null;
    for (;;) {
      const parsed = parseResponseHead(received, this.#head.method);
      if (parsed.kind === "incomplete") {
        // Kept as a copy (a head rarely spans reads): `chunk` may be a view of a read buffer that the dev
        // server's next read reuses (boxnet/upstream-reads.ts).
        this.#received = Buffer.from(received);
        return;
      }
      if (parsed.kind === "invalid") {
        this.#fail(new Error(`dev server response: ${parsed.reason}`), 502);
        return;
      }
      const head = parsed.head;
      const rest = received.subarray(head.length);
      // Interim responses (103 Early Hints, 100): only the final response is relayed, as undici does.
      if (head.status < 200) {
        received = rest;
        continue;
      }
      this.#startResponse(head, rest);
      return;
    }
  }

  /** Whether the dev server is late with its head (the pool's sweep asks). */
  get awaitingHead(): boolean {
    return !this.#response && !this.#finished;
  }

  #startResponse(head: ResponseHead, rest: Buffer): void {
    this.#response = head;
    let wire: string;
    try {
      wire = this.#exchange.responseHead(
        head,
        head.framing.kind === "close" || this.#head.close,
        Math.floor(this.#keepAliveMs / 1000),
      );
    } catch (err) {
      this.#fail(err as Error, 502);
      return;
    }
    if (head.framing.kind === "length") this.#remaining = head.framing.length;
    else if (head.framing.kind === "chunked") this.#chunked = new ChunkedBodyTracker();
    this.#started = true;
    if (head.framing.kind === "none") {
      if (rest.length) this.#upstreamReusable = false;
      this.#client.write(wire, "latin1");
      this.#end();
      return;
    }
    const take = rest.length ? this.#take(rest) : 0;
    if (take < 0) {
      this.#fail(new Error("dev server response: malformed chunked body"), 502);
      return;
    }
    let flowing: boolean;
    if (take <= MERGED_BODY_BYTES) {
      // The head and what came with it as one write (a copy: `rest` may be a view of a reused read
      // buffer). A small response, most of a dev page's modules, is then one socket write; a corked pair
      // went through the stream's writev path, about 5 % more instructions per small request for the
      // whole relay (callgrind, README).
      const merged = Buffer.allocUnsafe(wire.length + take);
      merged.write(wire, 0, "latin1");
      if (take) rest.copy(merged, wire.length, 0, take);
      flowing = this.#client.write(merged);
    } else {
      this.#client.cork();
      this.#client.write(wire, "latin1");
      flowing = this.#client.write(rest.subarray(0, take));
      this.#client.uncork();
    }
    if (!flowing) this.#upstream?.socket.pause();
    this.#bodyTaken();
  }

  #body(chunk: Buffer): void {
    const take = this.#take(chunk);
    if (take < 0) {
      this.#fail(new Error("dev server response: malformed chunked body"), 502);
      return;
    }
    if (take > 0 && !this.#client.write(take === chunk.length ? chunk : chunk.subarray(0, take))) {
      // Backpressure: stop reading the dev server until the client has taken what was written.
      this.#upstream?.socket.pause();
    }
    this.#bodyTaken();
  }

  /**
   * How many bytes of `chunk` belong to the response body (all of them unless it ends inside the chunk),
   * counted against the body's framing; -1 for a malformed chunked body.
   */
  #take(chunk: Buffer): number {
    const framing = this.#response!.framing;
    let take = chunk.length;
    if (framing.kind === "length") {
      take = Math.min(take, this.#remaining);
      this.#remaining -= take;
    } else if (framing.kind === "chunked") {
      take = this.#chunked!.push(chunk);
      if (take < 0) return -1;
    }
    if (take < chunk.length) this.#upstreamReusable = false; // bytes beyond the response: don't trust it again
    return take;
  }

  /** The response ends once its body has been taken whole. */
  #bodyTaken(): void {
    const framing = this.#response!.framing;
    if (framing.kind === "length" ? this.#remaining === 0 : framing.kind === "chunked" && this.#chunked!.done)
      this.#end();
  }

  clientDrained(): void {
    this.#upstream?.socket.resume();
  }

  /** The dev server ended or closed its connection. */
  upstreamEnded(): void {
    if (this.#finished) return;
    if (this.#response?.framing.kind === "close") {
      this.#upstreamReusable = false;
      this.#end();
      return;
    }
    // A reused connection that the dev server closed before answering (its keep-alive ran out as the
    // request left): GET and HEAD are safe to send again, once, on a fresh connection.
    if (!this.#response && this.#upstream?.reused && !this.#received && !this.#retried) {
      this.#retried = true;
      this.#detachUpstream(false);
      this.send();
      return;
    }
    this.#fail(new Error("dev server closed the connection before the response ended"), 502);
  }

  upstreamTimedOut(): void {
    this.#fail(
      Object.assign(new Error("dev server sent no response head in time"), { code: "ETIMEDOUT" }),
      504,
    );
  }

  /** The response ended: the upstream connection goes back to the pool (or is closed), the client goes on. */
  #end(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#detachUpstream(this.#upstreamReusable && this.#response!.reusable);
    this.#exchange.served(this.#response!.status);
    this.#owner.exchangeEnded(this.#response!.framing.kind === "close" || this.#head.close);
  }

  #detachUpstream(reusable: boolean): void {
    const upstream = this.#upstream;
    if (!upstream) return;
    this.#upstream = null;
    upstream.exchange = null;
    this.#pool.release(upstream, reusable);
  }

  /** The client went away: whatever the dev server still sends is dropped with its connection. */
  clientGone(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#detachUpstream(false);
    this.#exchange.served(499);
  }

  #fail(err: Error, status: number): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#detachUpstream(false);
    if (this.#started || this.#client.destroyed) {
      // Part of the response is out: the only honest signal left is a cut connection.
      this.#client.destroy();
      this.#exchange.served(status);
      return;
    }
    const page = this.#exchange.failed(err);
    const code = status === 504 ? 504 : page.status;
    const body = Buffer.from(page.html);
    const close = this.#head.close ? "connection: close\r\n" : "";
    this.#client.write(
      `HTTP/1.1 ${code} ${STATUS_CODES[code] ?? "Error"}\r\ncontent-type: text/html; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: ${body.length}\r\n${close}\r\n`,
      "latin1",
    );
    if (this.#head.method !== "HEAD") this.#client.write(body);
    this.#exchange.served(code);
    this.#owner.exchangeEnded(this.#head.close);
  }
}

/** What a connection to a dev server reports to the exchange using it. */
interface UpstreamUser {
  readonly client: Socket;
  upstreamData(chunk: Buffer): void;
  upstreamEnded(): void;
  upstreamTimedOut(): void;
  readonly awaitingHead: boolean;
}

/** A connection to a dev server, with its listeners set once: they report to the exchange using it. */
class UpstreamConnection {
  readonly socket: Socket;
  readonly host: string;
  readonly port: number;
  exchange: UpstreamUser | null = null;
  /** Whether it served an exchange before (a dev server may have closed it meanwhile). */
  reused = false;
  /** When it went idle, or when its current request was sent. */
  since = Date.now();
  /** The client socket the last bytes read were written to. */
  #writtenTo: Socket | null = null;

  /** Bytes still queued towards the client that took the last read: while any, that read's buffer is theirs. */
  get bufferedAmount(): number {
    return this.#writtenTo?.writableLength ?? 0;
  }

  constructor(socket: Socket, host: string, port: number, onClose: (c: UpstreamConnection) => void) {
    this.socket = socket;
    this.host = host;
    this.port = port;
    socket.setNoDelay(true);
    // Anything an idle connection receives is a protocol error (or its server's goodbye): close it.
    const onData = (chunk: Buffer) => {
      if (!this.exchange) {
        socket.destroy();
        return;
      }
      this.#writtenTo = this.exchange.client;
      this.exchange.upstreamData(chunk);
    };
    socket.on("data", onData);
    attachUpstreamReads(socket, onData, this);
    socket.on("end", () => this.exchange?.upstreamEnded());
    socket.on("close", () => {
      this.exchange?.upstreamEnded();
      onClose(this);
    });
    // Errors end in 'close'.
    socket.on("error", noop);
  }
}

interface PoolEntry<E> {
  idle: UpstreamConnection[];
  /** Connections open or being dialled, idle ones included. */
  open: number;
  waiting: Array<{ exchange: E; resolve: (c: UpstreamConnection) => void; reject: (err: Error) => void }>;
}

/** Keep-alive connections per dev server (pool key and port), at most `limit` each. */
export class UpstreamPool<E extends RelayExchange> {
  readonly #dial: (exchange: E) => Promise<Socket>;
  readonly #limit: number;
  readonly #entries = new Map<string, PoolEntry<E>>();
  readonly #busy = new Set<UpstreamConnection>();
  #closed = false;

  constructor(dial: (exchange: E) => Promise<Socket>, limit: number) {
    this.#dial = dial;
    this.#limit = limit;
  }

  #entry(key: string): PoolEntry<E> {
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = { idle: [], open: 0, waiting: [] };
      this.#entries.set(key, entry);
    }
    return entry;
  }

  /** An idle connection to this dev server, if one is parked (taken out of the pool). */
  idle(host: string, port: number): UpstreamConnection | null {
    const entry = this.#entries.get(`${host}:${port}`);
    if (!entry) return null;
    for (let c = entry.idle.pop(); c; c = entry.idle.pop()) {
      // One the dev server closed a moment ago is still listed until its 'close' event runs.
      if (c.socket.destroyed) continue;
      c.reused = true;
      this.#busy.add(c);
      return c;
    }
    return null;
  }

  /**
   * A new connection to `exchange.upstream`, dialled for `exchange`, or the next one released when the
   * dev server already has `limit`.
   */
  open(exchange: E): Promise<UpstreamConnection> {
    const { host, port } = exchange.upstream;
    const key = `${host}:${port}`;
    const entry = this.#entry(key);
    if (entry.open >= this.#limit)
      return new Promise((resolve, reject) => entry.waiting.push({ exchange, resolve, reject }));
    entry.open++;
    return this.#dial(exchange).then(
      (socket) => {
        const c = new UpstreamConnection(socket, host, port, (closed) => this.#forget(closed));
        this.#busy.add(c);
        return c;
      },
      (err: Error) => {
        entry.open--;
        // A request waiting for a free connection would wait for this one forever: it dials its own.
        const waiter = entry.waiting.shift();
        if (waiter && !this.#closed) this.open(waiter.exchange).then(waiter.resolve, waiter.reject);
        else if (entry.open === 0 && entry.waiting.length === 0) this.#entries.delete(key);
        throw err;
      },
    );
  }

  /** Back from an exchange: handed to a request waiting for one, parked for the next, or closed. */
  release(c: UpstreamConnection, reusable: boolean): void {
    this.#busy.delete(c);
    if (!reusable || this.#closed || c.socket.destroyed) {
      c.socket.destroy();
      return;
    }
    c.socket.resume();
    c.since = Date.now();
    const entry = this.#entry(`${c.host}:${c.port}`);
    const waiter = entry.waiting.shift();
    if (waiter) {
      c.reused = true;
      this.#busy.add(c);
      waiter.resolve(c);
      return;
    }
    entry.idle.push(c);
  }

  #forget(c: UpstreamConnection): void {
    this.#busy.delete(c);
    const key = `${c.host}:${c.port}`;
    const entry = this.#entries.get(key);
    if (!entry) return;
    entry.open--;
    const i = entry.idle.indexOf(c);
    if (i >= 0) entry.idle.splice(i, 1);
    // A request waiting for a free connection gets a fresh one.
    const waiter = entry.waiting.shift();
    if (waiter && !this.#closed) this.open(waiter.exchange).then(waiter.resolve, waiter.reject);
    if (entry.open === 0 && entry.waiting.length === 0) this.#entries.delete(key);
  }

  /** Closes idle connections past `idleMs`, and fails exchanges whose dev server is late past `headMs`. */
  sweep(now: number, idleMs: number, headMs: number): void {
    for (const entry of this.#entries.values()) {
      for (const c of entry.idle) if (now - c.since > idleMs) c.socket.destroy();
    }
    for (const c of this.#busy) {
      if (c.exchange?.awaitingHead && now - c.since > headMs) c.exchange.upstreamTimedOut();
    }
  }

  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.values()) {
      for (const c of entry.idle) c.socket.destroy();
      for (const waiter of entry.waiting) waiter.reject(new Error("preview proxy stopped"));
    }
    for (const c of this.#busy) c.socket.destroy();
    this.#entries.clear();
    this.#busy.clear();
  }
}

function noop(): void {}
