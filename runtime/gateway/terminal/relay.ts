/**
 * One relayed terminal: the browser's WebSocket (the client leg) joined to a WebSocket the relay opens to
 * the box's ttyd-protocol endpoint (the upstream leg). Everything that decides *whether* to relay happened
 * before this object exists (gateway.ts); this is the hot path and does as little per message as it can.
 *
 * - The client's first message must be ttyd's JSON init. The relay rebuilds it as `{AuthToken, columns,
 *   rows}` with the box credential it alone knows, so the client never sees or sends the credential, and
 *   anything else the client put there (a reconnect counter, an AuthToken of its own) is dropped.
 * - After that, every message is forwarded as received, binary or text, in order, both ways. PAUSE and
 *   RESUME are client messages like any other and pass through.
 * - Backpressure: when a leg's send buffer (`bufferedAmount`) passes the high-water mark the relay stops
 *   reading the *other* leg's socket (`ws.pause()`), and reads again once it drains below the low mark.
 *   ttyd 1.7.7 ignores PAUSE, and it only reads its pty after a socket write completes, so TCP
 *   backpressure is the flow control that reaches the process. The relay never holds more than about one
 *   high-water mark of output per socket.
 * - The client is connected while the upstream connects; its first messages wait (bounded) meanwhile.
 */
import type { RawData, WebSocket } from "ws";
import {
  ATTACH_ENDED_MARKER,
  ClientCommand,
  clampSize,
  encodeCredential,
  encodeInit,
  encodeResize,
  encodeServerMessage,
  parseInit,
  ServerCommand,
  type TerminalSize,
} from "../../../box/terminal/protocol.ts";
import type { Logger } from "../../platform/logger.ts";
import { type CloseSpec, close, mapUpstreamClose } from "./close-codes.ts";
import type { TerminalMetrics } from "./metrics.ts";

export interface RelaySettings {
  /** Stop reading the other leg when a leg's send buffer holds more than this many bytes… */
  highWaterMark: number;
  /** …and read again when it holds less than this. */
  lowWaterMark: number;
  /** The client must send its init within this long after the handshake. */
  initTimeoutMs: number;
  /** Client bytes held while the upstream connects; more closes the socket. */
  maxEarlyBytes: number;
  upstreamHandshakeTimeoutMs: number;
  /** Largest message accepted from the box. */
  upstreamMaxPayload: number;
  /** Ping each leg this often; the round trip is the latency metric. */
  pingIntervalMs: number;
  /**
   * A leg is dead when a ping has been unanswered this long *and* nothing arrived from it or drained
   * towards it meanwhile (a slow reader's pong waits behind the output queued before it).
   */
  deadPeerMs: number;
}

export interface UpstreamConnectOptions {
  protocols: string[];
  headers: Record<string, string>;
  handshakeTimeout: number;
  maxPayload: number;
  perMessageDeflate: false;
  followRedirects: false;
  /** Dials the box's socket (the upstream resolver's path choice); the URL's host is only the Host header. */
  createConnection?: typeof import("node:net").createConnection;
}

/** Opens the upstream WebSocket; tests wrap it to count or refuse connections. */
export type ConnectUpstream = (url: string, options: UpstreamConnectOptions) => WebSocket;

export interface RelayIdentity {
  userId: string;
  workspaceId: string;
  sessionId: string;
  /** The token's id, to join logs with the audit row written at mint. */
  jti: string;
  /** The client's reconnect counter from its subprotocol list, if it sent one. */
  reconnect: number | null;
  /** A read-only viewer: its INPUT and RESIZE messages are dropped (PAUSE and RESUME still pass). */
  readOnly: boolean;
  /**
   * The window title the client shows, built by the control plane (workspace and session names). The box's
   * own title messages never reach the client: ttyd's is its whole command line and host name.
   */
  title?: string;
}

export interface RelayHooks {
  connectUpstream: ConnectUpstream;
  /** After the upstream closed: a more specific reason from the database (session gone, box asleep), if any. */
  explainUpstreamEnd(relay: TerminalRelay): Promise<CloseSpec | null>;
  /** Called once, when both legs are done or being closed. */
  onEnd(relay: TerminalRelay, sent: CloseSpec | null, endedBy: "client" | "relay"): void;
}

const DEFAULT_SIZE = { columns: 80, rows: 24 };
const PAUSE = Buffer.of(ClientCommand.PAUSE);
const RESUME = Buffer.of(ClientCommand.RESUME);
const TTY = "tty";
const ATTACH_ENDED = Buffer.from(ATTACH_ENDED_MARKER);

function byteLength(data: RawData): number {
  if (Buffer.isBuffer(data)) return data.length;
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data.byteLength;
}

function firstByte(data: RawData): number | undefined {
  if (Buffer.isBuffer(data)) return data[0];
  if (Array.isArray(data)) return data.find((b) => b.length > 0)?.[0];
  return new Uint8Array(data, 0, Math.min(1, data.byteLength))[0];
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    return null;
  }
}

/** The init's size fields, whatever their values (clampSize decides). */
function pickSize(init: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (typeof init.columns === "number") out.columns = init.columns;
  if (typeof init.rows === "number") out.rows = init.rows;
  return out;
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

interface Leg {
  ws: WebSocket | null;
  /** We stopped reading this leg (the other leg is backed up). */
  paused: boolean;
  /** Outstanding ping: its payload sequence and when it was sent (0: none). */
  pingSeq: number;
  pingSentAt: number;
  lastPingAt: number;
  /** Last time a message arrived from this leg, or a write towards it completed. */
  lastProgressAt: number;
}

export class TerminalRelay {
  readonly client: WebSocket;
  readonly identity: RelayIdentity;
  /** performance.now() at accept, for the duration histogram. */
  readonly openedAt = performance.now();
  /** Date.now() of the last activity: client input, or enough output in a sweep (gateway.ts). */
  lastActivityAt = Date.now();
  /** lastActivityAt as last written to the database. */
  recordedActivityAt = 0;
  bytesUp = 0;
  bytesDown = 0;
  /** Output bytes since the gateway's last sweep; it decides whether that much output was activity. */
  outputSinceSweep = 0;
  reportedUp = 0;
  reportedDown = 0;

  readonly #url: string;
  readonly #credential: string;
  readonly #settings: RelaySettings;
  readonly #metrics: TerminalMetrics;
  readonly #log: Logger;
  readonly #hooks: RelayHooks;
  readonly #clientLeg: Leg;
  readonly #upLeg: Leg;
  #state: "connecting" | "open" | "ending" | "ended" = "connecting";
  #initSeen = false;
  /** The client's own last PAUSE/RESUME: the relay's backpressure never resumes what the client paused. */
  #clientWantsPause = false;
  #upstreamOpened = false;
  #connectStartedAt = 0;
  #early: Array<{ data: Buffer; binary: boolean }> = [];
  #earlyBytes = 0;
  #initTimer: NodeJS.Timeout | null = null;
  #pingSeq = 0;

  constructor(opts: {
    client: WebSocket;
    identity: RelayIdentity;
    upstreamUrl: string;
    credential: string;
    settings: RelaySettings;
    metrics: TerminalMetrics;
    log: Logger;
    hooks: RelayHooks;
  }) {
    this.client = opts.client;
    this.identity = opts.identity;
    this.#url = opts.upstreamUrl;
    this.#credential = opts.credential;
    this.#settings = opts.settings;
    this.#metrics = opts.metrics;
    this.#log = opts.log;
    this.#hooks = opts.hooks;
    const now = Date.now();
    const leg = (ws: WebSocket | null): Leg => ({
      ws,
      paused: false,
      pingSeq: 0,
      pingSentAt: 0,
      lastPingAt: now,
      lastProgressAt: now,
    });
    this.#clientLeg = leg(opts.client);
    this.#upLeg = leg(null);
  }

  get state(): string {
    return this.#state;
  }

  /** Bytes waiting in each leg's send buffer, and whether each leg is paused: tests and benchmarks. */
  get buffered(): { client: number; upstream: number; clientPaused: boolean; upstreamPaused: boolean } {
    return {
      client: this.client.bufferedAmount,
      upstream: this.#upLeg.ws?.bufferedAmount ?? 0,
      clientPaused: this.#clientLeg.paused,
      upstreamPaused: this.#upLeg.paused,
    };
  }

  /** Starts both legs: listens to the client and opens the upstream at once. */
  start(): void {
    const client = this.client;
    client.on("message", this.#onClientMessage);
    client.on("close", this.#onClientClose);
    client.on("error", (err) => this.#log.debug({ err: err.message }, "terminal client socket error"));
    client.on("pong", (data) => this.#onPong(this.#clientLeg, "client", data));
    this.#initTimer = setTimeout(() => {
      if (!this.#initSeen) this.end(close.initTimeout);
    }, this.#settings.initTimeoutMs);

    this.#connectStartedAt = performance.now();
    let upstream: WebSocket;
    try {
      upstream = this.#hooks.connectUpstream(this.#url, {
        protocols: [TTY],
        headers: { Authorization: `Basic ${encodeCredential(this.#credential)}` },
        handshakeTimeout: this.#settings.upstreamHandshakeTimeoutMs,
        maxPayload: this.#settings.upstreamMaxPayload,
        perMessageDeflate: false,
        followRedirects: false,
      });
    } catch (err) {
      this.#log.warn(
        { code: (err as NodeJS.ErrnoException).code ?? "error" },
        "terminal upstream could not be opened",
      );
      this.end(close.boxUnreachable);
      return;
    }
    this.#upLeg.ws = upstream;
    upstream.on("open", this.#onUpstreamOpen);
    upstream.on("message", this.#onUpstreamMessage);
    upstream.on("close", this.#onUpstreamClose);
    upstream.on("pong", (data) => this.#onPong(this.#upLeg, "upstream", data));
    // Only the error code: a connect error's message names the box address, which stays out of logs.
    upstream.on("error", (err: NodeJS.ErrnoException) =>
      this.#log.debug({ code: err.code ?? err.name }, "terminal upstream socket error"),
    );
    upstream.on("unexpected-response", (_req, res) => {
      res.resume();
      this.#log.warn({ status: res.statusCode }, "terminal upstream refused the upgrade");
      upstream.terminate();
    });
  }

  // ---- client → box -------------------------------------------------------------------------------

  readonly #onClientMessage = (data: RawData, isBinary: boolean): void => {
    if (this.#state === "ending" || this.#state === "ended") return;
    this.lastActivityAt = Date.now();
    this.#clientLeg.lastProgressAt = this.lastActivityAt;
    if (!this.#initSeen) {
      this.#onInit(toBuffer(data));
      return;
    }
    let len = byteLength(data);
    const command = len > 0 ? firstByte(data) : undefined;
    if (
      this.identity.readOnly &&
      (command === ClientCommand.INPUT || command === ClientCommand.RESIZE_TERMINAL)
    )
      return;
    if (command === ClientCommand.RESIZE_TERMINAL) {
      // Every resize is held within bounds: the box takes any size (and ttyd wraps it at 16 bits). One that
      // is in bounds already goes up as sent; one that is not is re-encoded at the clamp; garbage is dropped.
      const asked = parseJson(toBuffer(data).subarray(1)) as Partial<TerminalSize> | null;
      const size = clampSize(asked);
      if (!size) return;
      if (size.columns !== asked?.columns || size.rows !== asked?.rows) {
        data = encodeResize(size);
        isBinary = true;
        len = data.length;
      }
    }
    this.bytesUp += len;
    this.#sendUp(data, isBinary);
    if (len === 1) {
      const command = toBuffer(data)[0];
      if (command === ClientCommand.PAUSE) this.#clientWantsPause = true;
      else if (command === ClientCommand.RESUME) {
        this.#clientWantsPause = false;
        // Forwarded as sent; but the client's own RESUME must not undo the relay's backpressure.
        if (this.#upLeg.paused) this.#sendUp(PAUSE, true);
      }
    }
  };

  #onInit(data: Buffer): void {
    const init = parseInit(data);
    if (!init) {
      this.end(close.badInit);
      return;
    }
    this.#initSeen = true;
    if (this.#initTimer) clearTimeout(this.#initTimer);
    this.#initTimer = null;
    if (this.identity.reconnect === null) {
      const r = init.reconnect;
      if (typeof r === "number" && Number.isInteger(r) && r >= 0) this.identity.reconnect = r;
    }
    if ((this.identity.reconnect ?? 0) > 0) this.#metrics.reconnections.inc();
    const size = clampSize({ ...DEFAULT_SIZE, ...pickSize(init) }) ?? DEFAULT_SIZE;
    const rewritten = encodeInit(encodeCredential(this.#credential), size);
    this.#sendUp(rewritten, true);
  }

  #sendUp(data: RawData, binary: boolean): void {
    const up = this.#upLeg.ws;
    if (this.#state === "open" && up) {
      up.send(data, { binary }, this.#upSent);
      if (!this.#clientLeg.paused && up.bufferedAmount > this.#settings.highWaterMark) {
        this.#pauseLeg(this.#clientLeg, "client");
      }
      return;
    }
    if (this.#state !== "connecting") return;
    // Still connecting: hold it, in order, within a bound.
    const buf = toBuffer(data);
    this.#earlyBytes += buf.length;
    if (this.#earlyBytes > this.#settings.maxEarlyBytes) {
      this.end(close.tooMuchEarlyInput);
      return;
    }
    this.#early.push({ data: buf, binary });
  }

  readonly #upSent = (err?: Error | null): void => {
    if (err) return;
    const up = this.#upLeg.ws!;
    this.#upLeg.lastProgressAt = Date.now();
    if (this.#clientLeg.paused && up.bufferedAmount <= this.#settings.lowWaterMark) {
      this.#resumeLeg(this.#clientLeg);
    }
  };

  // ---- box → client -------------------------------------------------------------------------------

  readonly #onUpstreamOpen = (): void => {
    this.#upstreamOpened = true;
    this.#metrics.upstreamConnect.observe((performance.now() - this.#connectStartedAt) / 1000);
    if (this.#state !== "connecting") return;
    this.#state = "open";
    this.#upLeg.lastProgressAt = Date.now();
    const early = this.#early;
    this.#early = [];
    this.#earlyBytes = 0;
    for (const m of early) this.#sendUp(m.data, m.binary);
  };

  readonly #onUpstreamMessage = (data: RawData, isBinary: boolean): void => {
    if (this.#state !== "open") return;
    if (byteLength(data) > 0 && firstByte(data) === ServerCommand.SET_WINDOW_TITLE) {
      if (!this.identity.title) return;
      data = encodeServerMessage(ServerCommand.SET_WINDOW_TITLE, this.identity.title);
      isBinary = true;
    }
    const n = byteLength(data);
    this.bytesDown += n;
    this.outputSinceSweep += n;
    const client = this.client;
    client.send(data, { binary: isBinary }, this.#downSent);
    // ttyd's attach command says in-band that tmux exited normally (ATTACH_ENDED_MARKER), since ttyd itself
    // closes without a close frame, which would read as a lost box.
    if (toBuffer(data).includes(ATTACH_ENDED)) {
      this.end(close.ended);
      return;
    }
    if (!this.#upLeg.paused && client.bufferedAmount > this.#settings.highWaterMark) {
      this.#pauseLeg(this.#upLeg, "upstream");
    }
  };

  readonly #downSent = (err?: Error | null): void => {
    if (err) return;
    this.#clientLeg.lastProgressAt = Date.now();
    if (this.#upLeg.paused && this.client.bufferedAmount <= this.#settings.lowWaterMark) {
      this.#resumeLeg(this.#upLeg);
    }
  };

  #pauseLeg(leg: Leg, name: "client" | "upstream"): void {
    leg.paused = true;
    leg.ws?.pause();
    // Output backed up towards the client: also ask the box to stop reading its pty. ttyd 1.7.7 ignores
    // this (not reading its socket is what holds it back), the built-in endpoint honours it, and either
    // way less stale output queues up in front of a slow client (tmux redraws the current screen instead).
    if (leg === this.#upLeg && !this.#clientWantsPause) this.#sendUp(PAUSE, true);
    // Its pong can't be read while paused; a round trip measured across the pause would be the pause.
    leg.pingSentAt = 0;
    this.#metrics.backpressure.inc({ paused: name });
  }

  #resumeLeg(leg: Leg): void {
    leg.paused = false;
    leg.lastProgressAt = Date.now();
    leg.ws?.resume();
    if (leg === this.#upLeg && !this.#clientWantsPause) this.#sendUp(RESUME, true);
  }

  // ---- liveness and latency -----------------------------------------------------------------------

  /** Called by the gateway's sweep: pings each leg on schedule and drops a dead one. */
  tick(now: number): void {
    if (this.#state !== "open") return;
    for (const leg of [this.#clientLeg, this.#upLeg]) {
      const ws = leg.ws;
      if (!ws || leg.paused) continue;
      if (leg.pingSentAt !== 0) {
        const waited = now - leg.pingSentAt;
        if (waited > this.#settings.deadPeerMs && now - leg.lastProgressAt > this.#settings.deadPeerMs) {
          this.#log.info(
            { leg: leg === this.#clientLeg ? "client" : "upstream" },
            "terminal peer stopped answering",
          );
          ws.terminate(); // its close handler ends the relay with the right code
        }
        continue;
      }
      if (now - leg.lastPingAt < this.#settings.pingIntervalMs) continue;
      this.#pingSeq = (this.#pingSeq + 1) >>> 0;
      leg.pingSeq = this.#pingSeq;
      leg.pingSentAt = now;
      leg.lastPingAt = now;
      const payload = Buffer.allocUnsafe(4);
      payload.writeUInt32BE(leg.pingSeq);
      ws.ping(payload);
    }
  }

  #onPong(leg: Leg, name: "client" | "upstream", data: Buffer): void {
    leg.lastProgressAt = Date.now();
    if (leg.pingSentAt === 0 || data.length !== 4 || data.readUInt32BE(0) !== leg.pingSeq) return;
    this.#metrics.latency.observe({ leg: name }, (Date.now() - leg.pingSentAt) / 1000);
    leg.pingSentAt = 0;
  }

  // ---- endings ------------------------------------------------------------------------------------

  readonly #onClientClose = (): void => {
    if (this.#state === "ended") return;
    const wasEnding = this.#state === "ending";
    this.#finish(null, wasEnding ? "relay" : "client");
  };

  readonly #onUpstreamClose = (code: number): void => {
    if (this.#state === "ending" || this.#state === "ended") return;
    const fallback = this.#upstreamOpened ? mapUpstreamClose(code) : close.boxUnreachable;
    this.#state = "ending";
    // Ask the database whether the session was closed or the box went to sleep: a better reason than
    // whatever code the box managed to send.
    this.#hooks
      .explainUpstreamEnd(this)
      .catch(() => null)
      .then((specific) => this.#closeClient(specific ?? fallback));
  };

  /** Ends the relay from this side: closes the client with `spec` and the upstream normally. */
  end(spec: CloseSpec): void {
    if (this.#state === "ending" || this.#state === "ended") return;
    this.#state = "ending";
    this.#closeClient(spec);
  }

  #sent: CloseSpec | null = null;

  #closeClient(spec: CloseSpec): void {
    this.#sent = spec;
    this.#closeUpstream();
    const client = this.client;
    if (client.readyState === client.OPEN) {
      client.close(spec.code, spec.reason);
      // If the client never answers the close frame, ws destroys the socket after its own timeout.
    } else {
      this.#finish(spec, "relay");
    }
  }

  #closeUpstream(): void {
    const up = this.#upLeg.ws;
    if (!up) return;
    if (up.readyState === up.OPEN) up.close(1000);
    else if (up.readyState === up.CONNECTING) up.terminate();
  }

  #finish(_spec: CloseSpec | null, endedBy: "client" | "relay"): void {
    if (this.#state === "ended") return;
    this.#state = "ended";
    if (this.#initTimer) clearTimeout(this.#initTimer);
    this.#initTimer = null;
    this.#early = [];
    this.#closeUpstream();
    this.#hooks.onEnd(this, endedBy === "client" ? null : this.#sent, endedBy);
  }
}
