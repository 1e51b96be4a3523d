/**
 * A small client for ttyd's protocol: what a browser's ttyd page does, minus xterm. Used by the
 * conformance suite, the benchmark and the control plane's relay tests.
 */
import { StringDecoder } from "node:string_decoder";
import WebSocket from "ws";
import {
  basicAuthHeader,
  ClientCommand,
  encodeCredential,
  encodeInit,
  encodeInput,
  encodeResize,
  ServerCommand,
  type TerminalSize,
  TTY_SUBPROTOCOL,
} from "./protocol.ts";

export interface TtydConnectOptions {
  /** `ws://host:port/ws`, without a query. */
  url: string;
  /** Sent as `?arg=<session>` (URL-encoded). */
  session?: string;
  /** A raw query string instead of `session` (tests use it to send hostile args). */
  query?: string;
  /** `user:password`: sets the Basic header and the init AuthToken unless those are overridden. */
  credential?: string;
  /** Override the Basic header's credential; `null` sends no header. */
  basicCredential?: string | null;
  /** Override the init message's AuthToken (already base64, as ttyd expects). */
  authToken?: string;
  /** WebSocket subprotocols to offer; default `["tty"]`, `[]` for none. */
  protocols?: string[];
  size?: TerminalSize;
  /** Send the init message on open (default true); false to test what a server does without it. */
  sendInit?: boolean;
  openTimeoutMs?: number;
  headers?: Record<string, string>;
}

export class TtydConnectError extends Error {
  override name = "TtydConnectError";
  /** The HTTP status of a refused upgrade, when the server answered one. */
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface ServerMessage {
  command: number;
  body: Buffer;
}

interface Waiter {
  /** Sees each newly decoded piece of output; true once the pattern has appeared. */
  feed: (piece: string) => boolean;
  /** true: matched; false: the socket closed first. */
  settle: (matched: boolean) => void;
}

export class TtydClient {
  readonly ws: WebSocket;
  /** Every server message in arrival order. */
  readonly messages: ServerMessage[] = [];
  title: string | undefined;
  preferences: unknown;
  /** The OUTPUT stream decoded as UTF-8. */
  text = "";
  outputBytes = 0;
  readonly closed: Promise<CloseInfo>;
  #decoder = new StringDecoder("utf8");
  #waiters = new Set<Waiter>();

  private constructor(ws: WebSocket) {
    this.ws = ws;
    this.closed = new Promise((resolve) => {
      ws.on("close", (code, reason) => {
        resolve({ code, reason: reason.toString("utf8") });
        for (const w of this.#waiters) w.settle(false);
        this.#waiters.clear();
      });
    });
    ws.on("message", (data: Buffer) => this.#onMessage(data));
  }

  static connect(opts: TtydConnectOptions): Promise<TtydClient> {
    const query = opts.query ?? (opts.session !== undefined ? `arg=${encodeURIComponent(opts.session)}` : "");
    const url = query ? `${opts.url}?${query}` : opts.url;
    const headers: Record<string, string> = { ...opts.headers };
    const basic = opts.basicCredential === undefined ? opts.credential : opts.basicCredential;
    if (basic) headers.Authorization = basicAuthHeader(basic);
    const ws = new WebSocket(url, opts.protocols ?? [TTY_SUBPROTOCOL], {
      headers,
      handshakeTimeout: opts.openTimeoutMs ?? 10_000,
    });
    const client = new TtydClient(ws);
    return new Promise((resolve, reject) => {
      const fail = (err: TtydConnectError) => {
        ws.removeAllListeners("open");
        reject(err);
      };
      ws.once("unexpected-response", (_req, res) => {
        res.resume();
        fail(new TtydConnectError(`upgrade refused with HTTP ${res.statusCode}`, res.statusCode));
        ws.terminate();
      });
      ws.once("error", (err) => fail(new TtydConnectError(`connection failed: ${err.message}`)));
      ws.once("open", () => {
        ws.removeAllListeners("error");
        ws.on("error", () => {}); // later errors surface as a close
        if (opts.sendInit ?? true) {
          const token = opts.authToken ?? (opts.credential ? encodeCredential(opts.credential) : "");
          ws.send(encodeInit(token, opts.size ?? { columns: 80, rows: 24 }));
        }
        resolve(client);
      });
    });
  }

  #onMessage(data: Buffer): void {
    const command = data[0] ?? -1;
    const body = data.subarray(1);
    this.messages.push({ command, body });
    if (command === ServerCommand.OUTPUT) {
      this.outputBytes += body.length;
      const piece = this.#decoder.write(body);
      this.text += piece;
      for (const w of this.#waiters) {
        if (w.feed(piece)) {
          this.#waiters.delete(w);
          w.settle(true);
        }
      }
    } else if (command === ServerCommand.SET_WINDOW_TITLE) {
      this.title = body.toString("utf8");
    } else if (command === ServerCommand.SET_PREFERENCES) {
      try {
        this.preferences = JSON.parse(body.toString("utf8"));
      } catch {
        this.preferences = body.toString("utf8");
      }
    }
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  sendRaw(data: Buffer | string): void {
    this.ws.send(typeof data === "string" ? Buffer.from(data) : data);
  }

  type(text: string): void {
    this.sendRaw(encodeInput(text));
  }

  resize(size: TerminalSize): void {
    this.sendRaw(encodeResize(size));
  }

  pause(): void {
    this.sendRaw(Buffer.of(ClientCommand.PAUSE));
  }

  resume(): void {
    this.sendRaw(Buffer.of(ClientCommand.RESUME));
  }

  /** Current length of `text`; pass it as `since` to wait only for output that arrives later. */
  mark(): number {
    return this.text.length;
  }

  /** Resolves when the output (from `since` on) matches, rejects on timeout or close. */
  waitFor(
    pattern: string | RegExp | ((output: string) => boolean),
    opts: { since?: number; timeoutMs?: number } = {},
  ): Promise<void> {
    const since = opts.since ?? 0;
    let feed: (piece: string) => boolean;
    if (typeof pattern === "string") {
      // A string is searched only in each new piece plus the last pattern.length - 1 characters before it,
      // so waiting during megabytes of output stays linear. (Searching `this.text` from an offset is not:
      // V8 flattens the whole concatenated string for every indexOf, which made draining 4 MB take 20 s.)
      let carry = "";
      feed = (piece) => {
        const hay = carry + piece;
        if (hay.includes(pattern)) return true;
        carry = hay.slice(Math.max(0, hay.length - pattern.length + 1));
        return false;
      };
    } else {
      // A RegExp or predicate sees the whole tail each time (quadratic: for short outputs only).
      feed = () => {
        const tail = this.text.slice(since);
        if (typeof pattern === "function") return pattern(tail);
        pattern.lastIndex = 0;
        return pattern.test(tail);
      };
    }
    if (feed(this.text.slice(since))) return Promise.resolve();
    const timeoutMs = opts.timeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(`timed out after ${timeoutMs} ms waiting for ${String(pattern)} in terminal output`),
        );
      }, timeoutMs);
      const waiter: Waiter = {
        feed,
        settle: (matched) => {
          clearTimeout(timer);
          if (matched) resolve();
          else reject(new Error(`terminal closed while waiting for ${String(pattern)}`));
        },
      };
      this.#waiters.add(waiter);
    });
  }

  /** Closes (if still open) and resolves once the socket is closed. */
  async close(): Promise<CloseInfo> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    return this.closed;
  }

  /** Drops the TCP connection without a close handshake (a network failure, as the server sees it). */
  terminate(): void {
    this.ws.terminate();
  }
}
