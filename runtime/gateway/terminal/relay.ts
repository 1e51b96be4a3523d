/**
 * One relayed terminal: the browser's WebSocket (the client leg) joined to a WebSocket the relay opens to
 * the box's ttyd-protocol endpoint (the upstream leg). Everything that decides *whether* to relay happened
 * before this object exists (gateway.ts); this is the hot path and does as little per byte as it can.
 *
 * A frame passthrough: `ws` does both handshakes, then the relay takes both sockets over
 * (socket-takeover.ts) and forwards frames as the wire bytes they arrived as. A browser's frames arrive
 * masked, as the box expects from a client, and the box's unmasked, as the browser expects from a server,
 * so nothing needs re-framing. frame-reader.ts reads headers and each message's first payload byte (ttyd's
 * command) and routes whole messages; the relay writes its own frames (frames.ts) only between forwarded
 * frames (and data frames only between forwarded messages: `WireSocket.insert`).
 *
 * - The client's first message must be ttyd's JSON init. The relay rebuilds it as `{AuthToken, columns,
 *   rows}` with the box credential it alone knows, so the client never sees or sends the credential, and
 *   anything else the client put there (a reconnect counter, an AuthToken of its own) is dropped.
 * - After that, every message is forwarded as received, binary or text, in order, both ways, except: a
 *   viewer's INPUT and RESIZE are dropped; a RESIZE out of bounds is re-encoded at the clamp (garbage is
 *   dropped); the box's window title is replaced by the control plane's. PAUSE and RESUME pass through.
 * - Control frames are the relay's own on each leg: it answers pings, measures its own pings' round trip
 *   (the latency metric), and runs each leg's close handshake, mapping codes (close-codes.ts).
 * - Backpressure: when a socket's send buffer passes the high-water mark the relay stops reading the
 *   *other* leg's socket, and reads again once it drains below the low mark. ttyd 1.7.7 ignores PAUSE, and
 *   it only reads its pty after a socket write completes, so TCP backpressure is the flow control that
 *   reaches the process. The relay never holds more than about one high-water mark of output per socket.
 * - The client is connected while the upstream connects; its first messages wait (bounded) meanwhile.
 * - Neither leg negotiates permessage-deflate: compressed frames could not pass through.
 * - The box's socket is read into reused buffers (boxnet/upstream-reads.ts), not a new 64 KiB one per read: those
 *   made V8 mark the control plane's whole heap every ~64 MB of output.
 */
import { type OnReadOpts, Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { WebSocket } from "ws";
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
import { attachUpstreamReads, UPSTREAM_ONREAD } from "../../boxnet/upstream-reads.ts";
import type { Logger } from "../../platform/logger.ts";
import { type CloseSpec, close, mapUpstreamClose } from "./close-codes.ts";
import { FrameReader, type FrameSink, type MessageAction, Opcode } from "./frame-reader.ts";
import { encodeClose, encodeFrame, parseClose } from "./frames.ts";
import type { TerminalMetrics } from "./metrics.ts";
import { detachAddedListeners, type ListenerSnapshot, snapshotListeners } from "./socket-takeover.ts";

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
  /**
   * For the socket dialled (by `createConnection`, or by `ws` itself, which hands it to net.connect): box
   * output is read into reused buffers (boxnet/upstream-reads.ts). A socket made without it is read as usual.
   */
  onread?: OnReadOpts;
}

/** Opens the upstream WebSocket (only its handshake is used); tests wrap it to count or refuse connections. */
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
const TTY = "tty";
const ATTACH_ENDED = Buffer.from(ATTACH_ENDED_MARKER);
/** Largest message a browser may send (a paste); ttyd's own default is similar. */
export const CLIENT_MAX_PAYLOAD = 1024 * 1024;
/** How long a peer has to answer a close frame before its socket is destroyed (`ws`'s figure). */
const CLOSE_TIMEOUT_MS = 30_000;

const FORWARD = { action: "forward" as MessageAction, notify: false };
const FORWARD_NOTIFY = { action: "forward" as MessageAction, notify: true };
const DROP = { action: "drop" as MessageAction, notify: false };
const DROP_NOTIFY = { action: "drop" as MessageAction, notify: true };
const COLLECT = { action: "collect" as MessageAction, notify: false };

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

const ESC = 0x1b;

/** Whether `chunk[start, end)` holds an ESC byte: a loop for the few bytes of an echo, indexOf for more. */
function includesEsc(chunk: Buffer, start: number, end: number): boolean {
  if (end - start > 32) {
    const at = chunk.indexOf(ESC, start);
    return at >= 0 && at < end;
  }
  for (let i = start; i < end; i++) if (chunk[i] === ESC) return true;
  return false;
}

/** An empty write, queued behind bytes that did not go out at once, to learn when they have. */
const NOTHING = Buffer.alloc(0);

/**
 * One leg's socket as the relay writes to it: wire bytes only (`send`), and the relay's own frames placed
 * between the frames forwarded into it (`insert`). Before the upstream socket exists, writes are held.
 */
export class WireSocket {
  socket: Duplex | null = null;
  /** The reader whose forwarded frames come out here: inserted frames wait for its frame boundaries. */
  source: FrameReader | null = null;
  /** Bytes written before the socket existed (the upstream while it connects), in order. */
  early: Buffer[] = [];
  earlyBytes = 0;
  /** Our close frame went out: nothing else may follow it. */
  closeSent = false;
  #controlQueue: Buffer[] = [];
  #dataQueue: Buffer[] = [];
  readonly #written: (err?: Error | null) => void;
  readonly #afterWrite: () => void;

  constructor(written: (err?: Error | null) => void, afterWrite: () => void) {
    this.#written = written;
    this.#afterWrite = afterWrite;
  }

  /**
   * Writes wire bytes as they are. The one path every byte to this socket takes (tests sample it).
   *
   * `written` runs once the bytes are out. A callback passed to every write would cost a deferred call on
   * the next tick per message, after the bytes left: work the control plane then does while the box and
   * the shell are busy with the echo, which made relayed keystrokes measurably slower than a bare pipe in
   * the same process. Usually the socket takes the bytes at once (nothing queued before, nothing after),
   * so `written` runs here; only a write that queues gets a callback, carried by an empty write behind it,
   * which completes when the bytes before it have.
   */
  send(bytes: Buffer): void {
    const socket = this.socket;
    if (!socket) {
      this.early.push(bytes);
      this.earlyBytes += bytes.length;
    } else if (!socket.destroyed) {
      if (socket.writableLength > 0) socket.write(bytes, this.#written);
      else {
        socket.write(bytes);
        if (socket.writableLength === 0) this.#written();
        else socket.write(NOTHING, this.#written);
      }
    }
    this.#afterWrite();
  }

  /** Bytes waiting in the socket's send buffer. */
  get bufferedAmount(): number {
    return this.socket?.writableLength ?? 0;
  }

  /**
   * Writes a frame of the relay's own: at once if the forwarded output is at a frame boundary (a data
   * frame: at a message boundary), else when it gets there (`boundary`).
   */
  insert(frame: Buffer, control: boolean): void {
    if (this.closeSent) return;
    const source = this.source;
    source?.flush();
    if (source && (source.midFrame || (!control && source.midMessage))) {
      (control ? this.#controlQueue : this.#dataQueue).push(frame);
      return;
    }
    this.send(frame);
  }

  get waiting(): boolean {
    return this.#controlQueue.length > 0 || this.#dataQueue.length > 0;
  }

  /** The forwarded output reached a frame boundary: write what waited for it. */
  boundary(): void {
    if (this.#controlQueue.length > 0) {
      const queue = this.#controlQueue;
      this.#controlQueue = [];
      for (const frame of queue) this.send(frame);
    }
    if (this.#dataQueue.length > 0 && !this.source?.midMessage) {
      const queue = this.#dataQueue;
      this.#dataQueue = [];
      for (const frame of queue) this.send(frame);
    }
  }

  /** Drops frames that were waiting (the leg is being closed). */
  clearQueues(): void {
    this.#controlQueue = [];
    this.#dataQueue = [];
  }

  terminate(): void {
    this.socket?.destroy();
  }
}

interface Leg {
  name: "client" | "upstream";
  /** Writes towards this leg's peer. */
  out: WireSocket;
  /** We stopped reading this leg (the other leg is backed up). */
  paused: boolean;
  /** Outstanding ping: its payload sequence and when it was sent (0: none). */
  pingSeq: number;
  pingSentAt: number;
  lastPingAt: number;
  /** Last time bytes arrived from this leg, or a write towards it completed. */
  lastProgressAt: number;
}

export class TerminalRelay {
  /** The browser's leg (gateway.ts terminates it at shutdown; tests sample its writes). */
  readonly client: WireSocket;
  /** The box's leg. */
  readonly upstream: WireSocket;
  readonly identity: RelayIdentity;
  /** performance.now() at accept, for the duration histogram. */
  readonly openedAt = performance.now();
  /** Date.now() of the last activity: client input, or enough output in a sweep (gateway.ts). */
  lastActivityAt = Date.now();
  /** lastActivityAt as last written to the database. */
  recordedActivityAt = 0;
  reportedUp = 0;
  reportedDown = 0;

  readonly #clientSocket: Duplex;
  readonly #url: string;
  readonly #credential: string;
  readonly #settings: RelaySettings;
  readonly #metrics: TerminalMetrics;
  readonly #log: Logger;
  readonly #hooks: RelayHooks;
  readonly #clientLeg: Leg;
  readonly #upLeg: Leg;
  /** Reads the browser's frames (→ box). */
  readonly #fromClient: FrameReader;
  /** Reads the box's frames (→ browser). */
  readonly #fromBox: FrameReader;
  #upstreamWs: WebSocket | null = null;
  #state: "connecting" | "open" | "ending" | "ended" = "connecting";
  #initSeen = false;
  /** The client's own last PAUSE/RESUME: the relay's backpressure never resumes what the client paused. */
  #clientWantsPause = false;
  #upstreamOpened = false;
  /** The upstream's end was reported (its close frame or its socket's close), once. */
  #upstreamEnded = false;
  /**
   * The browser's messages that count as activity, as they start: those the relay forwards or reads from
   * a socket that may write. A read-only viewer changes nothing on the box (its keystrokes and resizes are
   * dropped), so nothing it sends holds off the idle timeout or autostop; output still does.
   */
  #clientMessagesKept = 0;
  #connectStartedAt = 0;
  #initTimer: NodeJS.Timeout | null = null;
  #clientCloseTimer: NodeJS.Timeout | null = null;
  #pingSeq = 0;
  /** Bytes counted outside the readers: rewritten resizes up, replaced titles down. */
  #extraUp = 0;
  #extraDown = 0;
  #sweepBase = 0;
  /** The box's next payload byte is a message's command byte, not output (marker scanning). */
  #atMessageStart = false;
  /** The last bytes of box output when they could begin the attach-ended marker. */
  #markerTail: Buffer | null = null;
  /** The marker was seen inside a frame still being forwarded: end once it is complete. */
  #endAtBoundary = false;
  #sent: CloseSpec | null = null;

  constructor(opts: {
    /** The browser's socket, handshake done and taken from `ws` (gateway.ts). */
    socket: Duplex;
    identity: RelayIdentity;
    upstreamUrl: string;
    credential: string;
    settings: RelaySettings;
    metrics: TerminalMetrics;
    log: Logger;
    hooks: RelayHooks;
  }) {
    this.#clientSocket = opts.socket;
    this.identity = opts.identity;
    this.#url = opts.upstreamUrl;
    this.#credential = opts.credential;
    this.#settings = opts.settings;
    this.#metrics = opts.metrics;
    this.#log = opts.log;
    this.#hooks = opts.hooks;
    const now = Date.now();
    this.client = new WireSocket(this.#clientWritten, this.#afterClientWrite);
    this.client.socket = opts.socket;
    this.upstream = new WireSocket(this.#upWritten, this.#afterUpWrite);
    const leg = (name: Leg["name"], out: WireSocket): Leg => ({
      name,
      out,
      paused: false,
      pingSeq: 0,
      pingSentAt: 0,
      lastPingAt: now,
      lastProgressAt: now,
    });
    this.#clientLeg = leg("client", this.client);
    this.#upLeg = leg("upstream", this.upstream);
    this.#fromClient = new FrameReader(this.#clientSink, {
      masked: true,
      maxMessageBytes: CLIENT_MAX_PAYLOAD,
    });
    this.#fromBox = new FrameReader(this.#boxSink, {
      masked: false,
      maxMessageBytes: opts.settings.upstreamMaxPayload,
      scanPayload: true,
    });
    this.upstream.source = this.#fromClient;
    this.client.source = this.#fromBox;
  }

  get state(): string {
    return this.#state;
  }

  /** Payload bytes relayed to the box (after the init) and to the browser. */
  get bytesUp(): number {
    return this.#fromClient.forwardedBytes + this.#extraUp;
  }

  get bytesDown(): number {
    return this.#fromBox.forwardedBytes + this.#extraDown;
  }

  /** Output bytes since the gateway's last sweep; it decides whether that much output was activity. */
  get outputSinceSweep(): number {
    return this.bytesDown - this.#sweepBase;
  }

  set outputSinceSweep(value: number) {
    this.#sweepBase = this.bytesDown - value;
  }

  /** Bytes waiting in each leg's send buffer, and whether each leg is paused: tests and benchmarks. */
  get buffered(): { client: number; upstream: number; clientPaused: boolean; upstreamPaused: boolean } {
    return {
      client: this.client.bufferedAmount,
      upstream: this.upstream.bufferedAmount,
      clientPaused: this.#clientLeg.paused,
      upstreamPaused: this.#upLeg.paused,
    };
  }

  /** Starts both legs: reads the client and opens the upstream at once. */
  start(): void {
    const client = this.#clientSocket;
    client.on("data", this.#onClientData);
    client.on("close", this.#onClientClose);
    client.on("end", () => client.end());
    client.on("error", (err) => this.#log.debug({ err: err.message }, "terminal client socket error"));
    this.#initTimer = setTimeout(() => {
      if (!this.#initSeen) this.end(close.initTimeout);
    }, this.#settings.initTimeoutMs);
    this.#connect();
  }

  /**
   * Opens the upstream and takes its socket once open. Its own method, so that the closures here (which
   * hold the WebSocket used for the handshake) share no scope with the long-lived ones in `start`.
   */
  #connect(): void {
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
        onread: UPSTREAM_ONREAD,
      });
    } catch (err) {
      this.#log.warn(
        { code: (err as NodeJS.ErrnoException).code ?? "error" },
        "terminal upstream could not be opened",
      );
      this.end(close.boxUnreachable);
      return;
    }
    this.#upstreamWs = upstream;
    let upSocket: Duplex | null = null;
    let before: ListenerSnapshot | null = null;
    // The response's socket, before `ws` attaches to it: what it adds after this is what we remove.
    upstream.on("upgrade", (res) => {
      upSocket = res.socket;
      before = snapshotListeners(res.socket);
    });
    upstream.on("open", () => {
      const socket = upSocket;
      if (!socket || !before) return void upstream.terminate();
      detachAddedListeners(socket, before);
      upSocket = null;
      before = null;
      upstream.removeAllListeners();
      upstream.on("error", () => {});
      this.#onUpstreamOpen(socket);
    });
    upstream.on("close", (code: number) => this.#onUpstreamEnd(code));
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

  readonly #onClientData = (chunk: Buffer): void => {
    const now = Date.now();
    this.#clientLeg.lastProgressAt = now;
    const kept = this.#clientMessagesKept;
    this.#fromClient.push(chunk);
    if (this.#clientMessagesKept !== kept && this.#state !== "ending" && this.#state !== "ended")
      this.lastActivityAt = now;
  };

  /** What happens to a browser message, by its command byte. */
  #clientDecision(command: number | undefined): ReturnType<FrameSink["decide"]> {
    if (!this.#initSeen) return COLLECT;
    if (command === ClientCommand.INPUT) return this.identity.readOnly ? DROP : FORWARD;
    if (command === ClientCommand.RESIZE_TERMINAL) return this.identity.readOnly ? DROP : COLLECT;
    if (command === ClientCommand.PAUSE || command === ClientCommand.RESUME) return FORWARD_NOTIFY;
    return FORWARD;
  }

  readonly #clientSink: FrameSink = {
    decide: (command) => {
      const decision = this.#clientDecision(command);
      if (decision !== DROP && !this.identity.readOnly) this.#clientMessagesKept++;
      return decision;
    },
    forward: (bytes) => this.upstream.send(bytes),
    collected: (payload, raw) => {
      if (!this.#initSeen) return this.#onInit(payload);
      // A resize: every one is held within bounds, since the box takes any size (and ttyd wraps it at 16
      // bits). One in bounds goes up as sent; one that is not is re-encoded at the clamp; garbage is dropped.
      const asked = parseJson(payload.subarray(1)) as Partial<TerminalSize> | null;
      const size = clampSize(asked);
      if (!size) return;
      if (size.columns === asked?.columns && size.rows === asked?.rows) {
        this.#extraUp += payload.length;
        this.upstream.insert(raw.length === 1 ? raw[0]! : Buffer.concat(raw), false);
      } else {
        const resize = encodeResize(size);
        this.#extraUp += resize.length;
        this.upstream.insert(encodeFrame(Opcode.BINARY, resize, true), false);
      }
    },
    messageEnd: (command, length) => {
      if (length !== 1) return;
      if (command === ClientCommand.PAUSE) this.#clientWantsPause = true;
      else if (command === ClientCommand.RESUME) {
        this.#clientWantsPause = false;
        // Forwarded as sent; but the client's own RESUME must not undo the relay's backpressure.
        if (this.#upLeg.paused) this.#sendUpCommand(ClientCommand.PAUSE);
      }
    },
    control: (opcode, payload) => this.#onControl(this.#clientLeg, opcode, payload),
    waiting: () => this.upstream.waiting,
    boundary: () => this.upstream.boundary(),
    error: (code, reason) => this.#clientProtocolError(code, reason),
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
    this.upstream.insert(encodeFrame(Opcode.BINARY, rewritten, true), false);
  }

  #sendUpCommand(command: number): void {
    this.upstream.insert(encodeFrame(Opcode.BINARY, Buffer.of(command), true), false);
  }

  /** After every write towards the box: still connecting (bounded), or backed up (stop reading the client). */
  readonly #afterUpWrite = (): void => {
    const up = this.upstream;
    if (!up.socket) {
      if (up.earlyBytes > this.#settings.maxEarlyBytes && this.#state === "connecting")
        this.end(close.tooMuchEarlyInput);
      return;
    }
    if (!this.#clientLeg.paused && up.bufferedAmount > this.#settings.highWaterMark) {
      this.#pauseLeg(this.#clientLeg);
    }
  };

  readonly #upWritten = (err?: Error | null): void => {
    if (err) return;
    this.#upLeg.lastProgressAt = Date.now();
    if (this.#clientLeg.paused && this.upstream.bufferedAmount <= this.#settings.lowWaterMark) {
      this.#resumeLeg(this.#clientLeg);
    }
  };

  // ---- box → client -------------------------------------------------------------------------------

  #onUpstreamOpen(socket: Duplex): void {
    this.#upstreamOpened = true;
    this.#upstreamWs = null;
    this.#metrics.upstreamConnect.observe((performance.now() - this.#connectStartedAt) / 1000);
    this.upstream.socket = socket;
    // Reads into the reused buffer come straight here (if the socket was dialled with it), bytes the
    // socket's stream still holds through 'data'. A view may be referenced until the browser's write is done.
    if (socket instanceof Socket) attachUpstreamReads(socket, this.#onUpstreamData, this.client);
    socket.on("data", this.#onUpstreamData);
    socket.on("close", () => this.#onUpstreamEnd(1006));
    socket.on("end", () => socket.end());
    socket.on("error", (err: NodeJS.ErrnoException) =>
      this.#log.debug({ code: err.code ?? err.name }, "terminal upstream socket error"),
    );
    if (this.#state !== "connecting") {
      // Ended while connecting: hang up at once.
      this.#closeUpstream();
      return;
    }
    this.#state = "open";
    this.#upLeg.lastProgressAt = Date.now();
    const early = this.upstream.early;
    this.upstream.early = [];
    this.upstream.earlyBytes = 0;
    if (early.length > 0) this.upstream.send(early.length === 1 ? early[0]! : Buffer.concat(early));
  }

  readonly #onUpstreamData = (chunk: Buffer): void => {
    this.#upLeg.lastProgressAt = Date.now();
    this.#fromBox.push(chunk);
  };

  readonly #boxSink: FrameSink = {
    decide: (command) => {
      this.#atMessageStart = true;
      // The box's own title is its command line and host name: replaced by ours, or dropped.
      if (command === ServerCommand.SET_WINDOW_TITLE) return DROP_NOTIFY;
      return FORWARD;
    },
    forward: (bytes) => this.client.send(bytes),
    forwardedPayload: (chunk, start, end) => {
      if (this.#atMessageStart) {
        this.#atMessageStart = false;
        start++; // the command byte
      }
      if (start < end && this.#sawAttachEnded(chunk, start, end)) this.#onAttachEnded();
    },
    collected: () => {},
    messageEnd: (command) => {
      if (command !== ServerCommand.SET_WINDOW_TITLE || !this.identity.title) return;
      const title = encodeServerMessage(ServerCommand.SET_WINDOW_TITLE, this.identity.title);
      this.#extraDown += title.length;
      this.client.insert(encodeFrame(Opcode.BINARY, title, false), false);
    },
    control: (opcode, payload) => this.#onControl(this.#upLeg, opcode, payload),
    waiting: () => this.client.waiting || this.#endAtBoundary,
    boundary: () => {
      this.client.boundary();
      if (this.#endAtBoundary) {
        this.#endAtBoundary = false;
        this.end(close.ended);
      }
    },
    error: (code, reason) => this.#upstreamProtocolError(code, reason),
  };

  /**
   * ttyd's attach command says in-band that tmux exited normally (ATTACH_ENDED_MARKER), since ttyd itself
   * closes without a close frame, which would read as a lost box. The marker may straddle frames and
   * messages, so the last bytes that could begin it are kept.
   */
  #sawAttachEnded(chunk: Buffer, start: number, end: number): boolean {
    const tail = this.#markerTail;
    // The marker begins with ESC: output without one (most of it) holds none of it and begins none.
    if (!tail && !includesEsc(chunk, start, end)) return false;
    const content = chunk.subarray(start, end);
    const keep = ATTACH_ENDED.length - 1;
    if (tail && Buffer.concat([tail, content.subarray(0, keep)]).includes(ATTACH_ENDED)) return true;
    if (content.includes(ATTACH_ENDED)) return true;
    let last: Buffer;
    if (content.length >= keep) last = content.subarray(content.length - keep);
    else {
      const joined = tail ? Buffer.concat([tail, content]) : content;
      last = joined.subarray(Math.max(0, joined.length - keep));
    }
    this.#markerTail = last.includes(ESC) ? Buffer.from(last) : null;
    return false;
  }

  #onAttachEnded(): void {
    if (this.#state !== "open") return;
    // The rest of the frame carrying it is forwarded first.
    if (this.#fromBox.midFrame) this.#endAtBoundary = true;
    else this.end(close.ended);
  }

  /** After every write towards the browser: stop reading the box when the browser is backed up. */
  readonly #afterClientWrite = (): void => {
    if (!this.#upLeg.paused && this.client.bufferedAmount > this.#settings.highWaterMark) {
      this.#pauseLeg(this.#upLeg);
    }
  };

  readonly #clientWritten = (err?: Error | null): void => {
    if (err) return;
    this.#clientLeg.lastProgressAt = Date.now();
    if (this.#upLeg.paused && this.client.bufferedAmount <= this.#settings.lowWaterMark) {
      this.#resumeLeg(this.#upLeg);
    }
  };

  #legSocket(leg: Leg): Duplex | null {
    return leg === this.#clientLeg ? this.#clientSocket : this.upstream.socket;
  }

  #pauseLeg(leg: Leg): void {
    if (this.#state === "ending" || this.#state === "ended") return;
    leg.paused = true;
    this.#legSocket(leg)?.pause();
    // Output backed up towards the client: also ask the box to stop reading its pty. ttyd 1.7.7 ignores
    // this (not reading its socket is what holds it back), the built-in endpoint honours it, and either
    // way less stale output queues up in front of a slow client (tmux redraws the current screen instead).
    if (leg === this.#upLeg && !this.#clientWantsPause) this.#sendUpCommand(ClientCommand.PAUSE);
    // Its pong can't be read while paused; a round trip measured across the pause would be the pause.
    leg.pingSentAt = 0;
    this.#metrics.backpressure.inc({ paused: leg.name });
  }

  #resumeLeg(leg: Leg): void {
    leg.paused = false;
    leg.lastProgressAt = Date.now();
    this.#legSocket(leg)?.resume();
    if (leg === this.#upLeg && !this.#clientWantsPause && this.#state === "open")
      this.#sendUpCommand(ClientCommand.RESUME);
  }

  // ---- control frames, liveness and latency -------------------------------------------------------

  #onControl(leg: Leg, opcode: number, payload: Buffer): void {
    const masked = leg === this.#upLeg; // towards the box we are the client
    if (opcode === Opcode.PING) leg.out.insert(encodeFrame(Opcode.PONG, payload, masked), true);
    else if (opcode === Opcode.PONG) this.#onPong(leg, payload);
    else if (leg === this.#clientLeg) this.#onClientCloseFrame(payload);
    else this.#onUpstreamCloseFrame(payload);
  }

  /** Called by the gateway's sweep: pings each leg on schedule and drops a dead one. */
  tick(now: number): void {
    if (this.#state !== "open") return;
    for (const leg of [this.#clientLeg, this.#upLeg]) {
      const socket = this.#legSocket(leg);
      if (!socket || leg.paused) continue;
      if (leg.pingSentAt !== 0) {
        const waited = now - leg.pingSentAt;
        if (waited > this.#settings.deadPeerMs && now - leg.lastProgressAt > this.#settings.deadPeerMs) {
          this.#log.info({ leg: leg.name }, "terminal peer stopped answering");
          socket.destroy(); // its close handler ends the relay with the right code
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
      leg.out.insert(encodeFrame(Opcode.PING, payload, leg === this.#upLeg), true);
    }
  }

  #onPong(leg: Leg, data: Buffer): void {
    leg.lastProgressAt = Date.now();
    if (leg.pingSentAt === 0 || data.length !== 4 || data.readUInt32BE(0) !== leg.pingSeq) return;
    this.#metrics.latency.observe({ leg: leg.name }, (Date.now() - leg.pingSentAt) / 1000);
    leg.pingSentAt = 0;
  }

  // ---- endings ------------------------------------------------------------------------------------

  /** The browser sent a close frame: answer it, hang up the box, and we are done. */
  #onClientCloseFrame(payload: Buffer): void {
    const parsed = parseClose(payload);
    if ("error" in parsed) {
      this.#clientProtocolError(parsed.error, parsed.reason);
      return;
    }
    this.#fromClient.discard();
    if (!this.client.closeSent) this.#sendClientClose(parsed.code === 1005 ? undefined : parsed.code, "");
    this.#clientSocket.end();
    if (this.#state !== "ending" && this.#state !== "ended") this.#finish("client");
  }

  /** The browser broke the protocol: close it with the code `ws` would have used, and hang up the box. */
  #clientProtocolError(code: number, reason: string): void {
    this.#log.info({ code, reason }, "terminal client protocol error");
    this.#fromClient.discard();
    if (!this.client.closeSent) this.#sendClientClose(code, reason);
    // Its answer cannot be read any more (the reader stopped at the error): hang up after the close frame.
    this.#clientSocket.end();
    this.#closeUpstream();
  }

  readonly #onClientClose = (): void => {
    if (this.#clientCloseTimer) clearTimeout(this.#clientCloseTimer);
    this.#clientCloseTimer = null;
    if (this.#state === "ended") return;
    this.#finish(this.#state === "ending" ? "relay" : "client");
  };

  #onUpstreamCloseFrame(payload: Buffer): void {
    const parsed = parseClose(payload);
    const code = "error" in parsed ? parsed.error : parsed.code;
    this.#fromBox.discard();
    // Answered with its own code, unless we hung up first (then this is the answer).
    this.#closeUpstream(code === 1005 || "error" in parsed ? undefined : code);
    this.upstream.socket?.end();
    this.#onUpstreamEnd(code);
  }

  #upstreamProtocolError(code: number, reason: string): void {
    this.#log.info({ code, reason }, "terminal upstream protocol error");
    this.#closeUpstream(code);
    this.#onUpstreamEnd(code);
  }

  /** The upstream ended (its close frame, its socket closing, or a failed connect) with `code`. */
  #onUpstreamEnd(code: number): void {
    if (this.#upstreamEnded) return;
    this.#upstreamEnded = true;
    if (this.#state === "ending" || this.#state === "ended" || this.client.closeSent) return;
    this.#fromBox.discard();
    const fallback = this.#upstreamOpened ? mapUpstreamClose(code) : close.boxUnreachable;
    this.#state = "ending";
    // Ask the database whether the session was closed or the box went to sleep: a better reason than
    // whatever code the box managed to send.
    this.#hooks
      .explainUpstreamEnd(this)
      .catch(() => null)
      .then((specific) => this.#closeClient(specific ?? fallback));
  }

  /** Ends the relay from this side: closes the client with `spec` and the upstream normally. */
  end(spec: CloseSpec): void {
    if (this.#state === "ending" || this.#state === "ended") return;
    this.#state = "ending";
    this.#closeClient(spec);
  }

  #closeClient(spec: CloseSpec): void {
    this.#sent = spec;
    this.#closeUpstream();
    const socket = this.#clientSocket;
    if (socket.writable && !socket.destroyed && !this.client.closeSent) {
      this.#fromClient.discard();
      this.#sendClientClose(spec.code, spec.reason);
    } else if (!this.client.closeSent || socket.destroyed) {
      this.#finish("relay");
    }
  }

  /**
   * Writes our close frame to the browser, after whatever box output was forwarded: a frame cut short is
   * completed with NUL bytes first (terminals ignore NUL), so the close code still reaches the page. If the
   * browser never answers, its socket is destroyed after CLOSE_TIMEOUT_MS, as `ws` did.
   */
  #sendClientClose(code: number | undefined, reason: string): void {
    const box = this.#fromBox;
    box.flush();
    const rest = box.frameRemaining;
    box.discard();
    this.#endAtBoundary = false;
    const client = this.client;
    client.clearQueues();
    if (rest > 0) client.send(Buffer.alloc(rest));
    client.insert(encodeClose(code, reason, false), true);
    client.closeSent = true;
    this.#readUntilClosed(this.#clientLeg);
    if (!this.#clientCloseTimer) {
      this.#clientCloseTimer = setTimeout(() => this.#clientSocket.destroy(), CLOSE_TIMEOUT_MS);
      this.#clientCloseTimer.unref();
    }
  }

  /**
   * Hangs up the box: a close frame (1000 unless a protocol error says otherwise), or, while connecting or
   * with a browser frame half forwarded (it cannot be completed with bytes that would be typed), a reset.
   */
  #closeUpstream(code: number | undefined = 1000): void {
    const ws = this.#upstreamWs;
    if (ws) {
      this.#upstreamWs = null;
      ws.terminate();
      return;
    }
    const up = this.upstream;
    const socket = up.socket;
    if (!socket || socket.destroyed || up.closeSent) return;
    const fromClient = this.#fromClient;
    fromClient.flush();
    const cut = fromClient.midFrame;
    fromClient.discard();
    up.clearQueues();
    if (cut) {
      socket.destroy();
      return;
    }
    up.insert(encodeClose(code, "", true), true);
    up.closeSent = true;
    this.#readUntilClosed(this.#upLeg);
    // The box answers and closes; one that does not is cut off.
    const timer = setTimeout(() => socket.destroy(), CLOSE_TIMEOUT_MS);
    timer.unref();
    socket.once("close", () => clearTimeout(timer));
  }

  /**
   * A leg our close frame went out on is read again if backpressure paused it: only its close answer (or
   * its FIN) matters now, and the write completions that would have resumed it may never come (the other
   * leg is gone), which left the close to the 30 s timer. No RESUME goes to the box: it is being closed.
   */
  #readUntilClosed(leg: Leg): void {
    if (!leg.paused) return;
    leg.paused = false;
    this.#legSocket(leg)?.resume();
  }

  #finish(endedBy: "client" | "relay"): void {
    if (this.#state === "ended") return;
    this.#state = "ended";
    if (this.#initTimer) clearTimeout(this.#initTimer);
    this.#initTimer = null;
    this.upstream.early = [];
    this.#closeUpstream();
    this.#hooks.onEnd(this, endedBy === "client" ? null : this.#sent, endedBy);
  }
}
