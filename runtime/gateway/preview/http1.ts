/**
 * Strict HTTP/1.1 message heads and body framing for the preview proxy's byte relay (byte-relay.ts).
 *
 * The relay forwards only what this module understands completely, and re-serializes every head it
 * forwards, so the dev server and the client each see exactly the message boundaries the proxy decided on
 * (no request smuggling: RFC 9112 §11.2). Anything unusual in a request (a body, an upgrade, HTTP/1.0,
 * obs-fold, a bare CR or LF, a duplicated singleton header, a head that does not fit) is not refused here:
 * the connection is handed to Node's HTTP server, whose parser and the proxy's lean path answer it as
 * before. A response head that breaks these rules is the dev server's fault and becomes a 502.
 */
import type { IncomingHttpHeaders } from "node:http";

/** Node's default `maxHeaderSize`: a longer request head is Node's to refuse (431). */
export const MAX_HEAD_BYTES = 16 * 1024;

const HEAD_END = Buffer.from("\r\n\r\n");
/** RFC 9110 §5.6.2 tchar, per ASCII code: a field name is checked without slicing it out first. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TCHAR[c.charCodeAt(0)] = 1;
}

/** Whether `line[0, end)` is a token (RFC 9110 §5.6.2): one or more tchar. */
function isToken(line: string, end: number): boolean {
  if (end === 0) return false;
  for (let i = 0; i < end; i++) {
    const c = line.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}
/** Origin-form targets only (RFC 9112 §3.2.1): no absolute-form, no `*`, visible ASCII only. */
const REQUEST_LINE = /^(GET|HEAD) (\/[\x21-\x7e]*) HTTP\/1\.1$/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/;

/**
 * Request fields Node's HTTP server keeps once (it discards repeats); a repeated one is left to Node, so a
 * dev server never sees a value Node would not have given it. Framing fields never reach this list: any
 * request that carries one is handed over.
 */
const SINGLETON_REQUEST_FIELDS: ReadonlySet<string> = new Set([
  "age",
  "authorization",
  "content-type",
  "etag",
  "expires",
  "from",
  "host",
  "if-modified-since",
  "if-unmodified-since",
  "last-modified",
  "location",
  "max-forwards",
  "proxy-authorization",
  "referer",
  "retry-after",
  "server",
  "user-agent",
]);

/** Request fields that make a message something other than a bodiless exchange of one request and one response. */
const HANDED_OVER_FIELDS: ReadonlySet<string> = new Set([
  "content-length",
  "transfer-encoding",
  "upgrade",
  "expect",
]);

export interface RequestHead {
  method: "GET" | "HEAD";
  /** Origin-form: `/path?query`. */
  target: string;
  /** Field names lowercased; repeats joined as Node joins them (`; ` for Cookie, `, ` otherwise). */
  headers: IncomingHttpHeaders;
  /** Whether the client asked to close the connection after this exchange. */
  close: boolean;
  /** Bytes of the head, final CRLF CRLF included. */
  length: number;
}

export type RequestParse =
  | { kind: "incomplete" }
  /** Not for the byte relay: Node's HTTP server takes the connection from here. */
  | { kind: "handover"; reason: string }
  | { kind: "request"; head: RequestHead };

/** Where the head in `buf` ends (after its CRLF CRLF), -1 if not yet, or 0 if it cannot end within `limit`. */
function headEnd(buf: Buffer, limit: number): number {
  const at = buf.indexOf(HEAD_END);
  if (at >= 0) return at + 4 <= limit ? at + 4 : 0;
  return buf.length >= limit ? 0 : -1;
}

/** Per byte: 0 allowed, 1 never (a control character other than HTAB), 2 CR, 3 LF. */
const BYTE_CLASS = new Uint8Array(256);
for (let b = 0; b < 0x20; b++) BYTE_CLASS[b] = 1;
BYTE_CLASS[0x09] = 0;
BYTE_CLASS[0x7f] = 1;
BYTE_CLASS[0x0d] = 2;
BYTE_CLASS[0x0a] = 3;

/**
 * The lines of the head in `buf[0, end)` (its final CRLF CRLF excluded), or null when it holds a control
 * character other than HTAB, or a CR or LF that is not part of a CRLF (RFC 9112 §2.2: a recipient may not
 * treat a bare CR as a line end; treating it as anything else is how two parsers come to disagree). One
 * pass over the bytes (a regular expression over the string took about twice as long).
 */
function lines(buf: Buffer, end: number): string[] | null {
  for (let i = 0; i < end; i++) {
    const k = BYTE_CLASS[buf[i]!]!;
    if (k === 0) continue;
    if (k === 2 && buf[i + 1] === 0x0a && i + 1 < end) i++;
    else return null;
  }
  return buf.toString("latin1", 0, end).split("\r\n");
}

/**
 * Where a field line's name ends (the colon), or -1 when the line is not `token ":" …`: RFC 9112 §5
 * allows no whitespace before the colon.
 */
function nameEnd(line: string): number {
  const colon = line.indexOf(":");
  return colon > 0 && isToken(line, colon) ? colon : -1;
}

/** A field line's value: what follows the colon, without the optional SP or HTAB around it. */
function fieldValue(line: string, colon: number): string {
  let start = colon + 1;
  let end = line.length;
  while (start < end && (line.charCodeAt(start) === 0x20 || line.charCodeAt(start) === 0x09)) start++;
  while (end > start && (line.charCodeAt(end - 1) === 0x20 || line.charCodeAt(end - 1) === 0x09)) end--;
  return line.slice(start, end);
}

function hasToken(value: string | string[] | undefined, token: string): boolean {
  if (value === undefined) return false;
  const joined = Array.isArray(value) ? value.join(",") : value;
  return joined.split(",").some((t) => t.trim().toLowerCase() === token);
}

/** Parses the request head at the start of `buf`, if the byte relay may forward it. */
export function parseRequestHead(buf: Buffer): RequestParse {
  const end = headEnd(buf, MAX_HEAD_BYTES);
  if (end < 0) return { kind: "incomplete" };
  if (end === 0) return { kind: "handover", reason: "head too large" };
  const all = lines(buf, end - 4);
  if (!all) return { kind: "handover", reason: "bare CR or LF, or a control character" };
  const m = REQUEST_LINE.exec(all[0]!);
  if (!m) return { kind: "handover", reason: "not a GET or HEAD in origin-form over HTTP/1.1" };
  const headers: IncomingHttpHeaders = Object.create(null);
  for (let i = 1; i < all.length; i++) {
    const line = all[i]!;
    const colon = nameEnd(line);
    if (colon < 0) return { kind: "handover", reason: "malformed field line (or obs-fold)" };
    const name = line.slice(0, colon).toLowerCase();
    const value = fieldValue(line, colon);
    if (HANDED_OVER_FIELDS.has(name)) return { kind: "handover", reason: `request has ${name}` };
    const existing = headers[name];
    if (existing === undefined) headers[name] = value;
    else if (SINGLETON_REQUEST_FIELDS.has(name)) return { kind: "handover", reason: `repeated ${name}` };
    else headers[name] = `${existing as string}${name === "cookie" ? "; " : ", "}${value}`;
  }
  if (headers.host === undefined) return { kind: "handover", reason: "no Host" };
  return {
    kind: "request",
    head: {
      method: m[1] as "GET" | "HEAD",
      target: m[2]!,
      headers,
      close: hasToken(headers.connection, "close"),
      length: end,
    },
  };
}

/** How a response's body ends (RFC 9112 §6.3). */
export type BodyFraming =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  /** Until the dev server closes the connection. */
  | { kind: "close" };

export interface ResponseHead {
  status: number;
  reason: string;
  /** Field names lowercased; Set-Cookie as an array, other repeats joined with `, `; framing fields removed. */
  headers: IncomingHttpHeaders;
  framing: BodyFraming;
  /** Whether the upstream connection may carry another request after this response. */
  reusable: boolean;
  length: number;
}

export type ResponseParse =
  | { kind: "incomplete" }
  | { kind: "invalid"; reason: string }
  | { kind: "response"; head: ResponseHead };

/** Enough for any dev server's head (cookies, CSP); more is a broken or hostile upstream. */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;

/**
 * Parses the response head at the start of `buf`, for a request with `method`. 1xx heads are parsed like
 * any other; the caller skips them (status < 200).
 */
export function parseResponseHead(buf: Buffer, method: string): ResponseParse {
  const end = headEnd(buf, MAX_RESPONSE_HEAD_BYTES);
  if (end < 0) return { kind: "incomplete" };
  if (end === 0) return { kind: "invalid", reason: "response head too large" };
  const all = lines(buf, end - 4);
  if (!all) return { kind: "invalid", reason: "bare CR or LF, or a control character" };
  const m = STATUS_LINE.exec(all[0]!);
  if (!m) return { kind: "invalid", reason: "malformed status line" };
  const http10 = m[1] === "0";
  const status = Number(m[2]);
  const headers: IncomingHttpHeaders = Object.create(null);
  const lengths: string[] = [];
  const codings: string[] = [];
  for (let i = 1; i < all.length; i++) {
    const line = all[i]!;
    const colon = nameEnd(line);
    if (colon < 0) return { kind: "invalid", reason: "malformed field line (or obs-fold)" };
    const name = line.slice(0, colon).toLowerCase();
    const value = fieldValue(line, colon);
    if (name === "content-length") lengths.push(value);
    else if (name === "transfer-encoding") codings.push(value);
    else if (name === "set-cookie") headers["set-cookie"] = [...(headers["set-cookie"] ?? []), value];
    else {
      const existing = headers[name];
      headers[name] = existing === undefined ? value : `${existing as string}, ${value}`;
    }
  }
  let framing: BodyFraming;
  if (status < 200 || status === 204 || status === 304 || method === "HEAD") {
    if (status === 101) return { kind: "invalid", reason: "101 to a request that asked for no upgrade" };
    // No body whatever the fields say; a HEAD or 304 answer keeps its Content-Length for the client.
    framing = { kind: "none" };
    if (lengths.length && status >= 200) {
      if (!lengths.every((l) => l === lengths[0]) || !/^\d{1,15}$/.test(lengths[0]!)) {
        return { kind: "invalid", reason: "bad Content-Length" };
      }
      headers["content-length"] = lengths[0];
    }
  } else if (codings.length) {
    // Chunked must be the only and final coding, and no Content-Length beside it (RFC 9112 §6.3 items 3, 4).
    if (http10 || lengths.length)
      return { kind: "invalid", reason: "Transfer-Encoding with Content-Length or HTTP/1.0" };
    if (
      codings
        .join(",")
        .split(",")
        .map((c) => c.trim().toLowerCase())
        .join(",") !== "chunked"
    ) {
      return { kind: "invalid", reason: "a transfer coding other than chunked" };
    }
    framing = { kind: "chunked" };
  } else if (lengths.length) {
    if (!lengths.every((l) => l === lengths[0]) || !/^\d{1,15}$/.test(lengths[0]!)) {
      return { kind: "invalid", reason: "bad Content-Length" };
    }
    framing = { kind: "length", length: Number(lengths[0]) };
  } else {
    framing = { kind: "close" };
  }
  const reusable = !http10 && framing.kind !== "close" && !hasToken(headers.connection, "close");
  return { kind: "response", head: { status, reason: m[3] ?? "", headers, framing, reusable, length: end } };
}

/** `name: value` lines for `headers` (arrays as repeated lines), each ending in CRLF. */
function fieldLines(headers: IncomingHttpHeaders): string {
  let out = "";
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) out += `${name}: ${v}\r\n`;
    else out += `${name}: ${value}\r\n`;
  }
  return out;
}

/** The request head to send upstream. Values come from a parsed head or the proxy itself: no CR or LF. */
export function serializeRequestHead(method: string, target: string, headers: IncomingHttpHeaders): string {
  return `${method} ${target} HTTP/1.1\r\n${fieldLines(headers)}\r\n`;
}

/**
 * The response head to send the client: the framing the relay will honour (the body's own, re-stated),
 * and either `Connection: close` when this is the connection's last response, or, given
 * `keepAliveSeconds`, the `Keep-Alive: timeout=N` node:http sends, so a client stops reusing an idle
 * connection before the server closes it.
 */
export function serializeResponseHead(head: ResponseHead, close: boolean, keepAliveSeconds?: number): string {
  let framing = "";
  if (head.framing.kind === "length") framing = `content-length: ${head.framing.length}\r\n`;
  else if (head.framing.kind === "chunked") framing = "transfer-encoding: chunked\r\n";
  let connection = "";
  if (close) connection = "connection: close\r\n";
  else if (keepAliveSeconds) connection = `keep-alive: timeout=${keepAliveSeconds}\r\n`;
  return `HTTP/1.1 ${head.status} ${head.reason}\r\n${fieldLines(head.headers)}${framing}${connection}\r\n`;
}

/**
 * Follows a chunked body (RFC 9112 §7.1) as its bytes pass through unchanged, to find where it ends:
 * chunk-size lines (hex, optional extensions), chunk data with its CRLF, the last chunk and the trailer
 * section. Any deviation is an error: the relay then closes both connections rather than guess.
 */
export class ChunkedBodyTracker {
  #state: "size" | "data" | "data-cr" | "data-lf" | "trailer" | "done" = "size";
  /** The current size or trailer line, as far as read (bounded). */
  #line = "";
  #remaining = 0;

  get done(): boolean {
    return this.#state === "done";
  }

  /**
   * Consumes `chunk`; returns how many of its bytes belong to the body (all of them unless the body ends
   * inside it), or -1 on a framing error.
   */
  push(chunk: Buffer): number {
    let i = 0;
    while (i < chunk.length && this.#state !== "done") {
      switch (this.#state) {
        case "data": {
          const take = Math.min(this.#remaining, chunk.length - i);
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = "data-cr";
          break;
        }
        case "data-cr":
          if (chunk[i++] !== 0x0d) return -1;
          this.#state = "data-lf";
          break;
        case "data-lf":
          if (chunk[i++] !== 0x0a) return -1;
          this.#state = "size";
          break;
        default: {
          // "size" or "trailer": a line up to CRLF.
          const lf = chunk.indexOf(0x0a, i);
          const upto = lf < 0 ? chunk.length : lf + 1;
          this.#line += chunk.toString("latin1", i, upto);
          i = upto;
          if (this.#line.length > 4096) return -1;
          if (lf < 0) break;
          if (!this.#line.endsWith("\r\n")) return -1;
          const line = this.#line.slice(0, -2);
          this.#line = "";
          if (!this.#lineDone(line)) return -1;
        }
      }
    }
    return i;
  }

  #lineDone(line: string): boolean {
    if (line.includes("\r")) return false;
    if (this.#state === "trailer") {
      if (line === "") this.#state = "done";
      else if (nameEnd(line) < 0) return false;
      return true;
    }
    const m = /^([0-9A-Fa-f]{1,12})(?:[\t ]*;[\t\x20-\x7e\x80-\xff]*)?$/.exec(line);
    if (!m) return false;
    const size = Number.parseInt(m[1]!, 16);
    if (size === 0) this.#state = "trailer";
    else {
      this.#remaining = size;
      this.#state = "data";
    }
    return true;
  }
}
