/**
 * Strict HTTP/1.1 message heads and body framing for the preview proxy's byte relay (byte-relay.ts).
 *
 * The relay forwards only what this module understands completely: every byte of a head it forwards has
 * been checked (field names are tokens; no control character, bare CR or LF, or obs-fold), its start line
 * and body framing are re-stated by the relay, and its other field lines pass as they came or as the
 * caller rewrote them. So the dev server and the client each see exactly the message boundaries the proxy
 * decided on (no request smuggling: RFC 9112 §11.2). Anything unusual in a request (a body, an upgrade, HTTP/1.0,
 * obs-fold, a bare CR or LF, a duplicated singleton header, a head that does not fit) is not refused here:
 * the connection is handed to Node's HTTP server, whose parser and the proxy's lean path answer it as
 * before. A response head that breaks these rules is the dev server's fault and becomes a 502.
 */
/** Node's default `maxHeaderSize`: a longer request head is Node's to refuse (431). */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Enough for any dev server's head (cookies, CSP); more is a broken or hostile upstream. */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;

const HEAD_END = Buffer.from("\r\n\r\n");
/** RFC 9110 §5.6.2 tchar, per ASCII code: a field name is checked without slicing it out first. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TCHAR[c.charCodeAt(0)] = 1;
}

/** Whether `text[start, end)` is a token (RFC 9110 §5.6.2): one or more tchar. */
function isToken(text: string, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}

/**
 * Where a field line's name ends (the colon), or -1 when the line is not `token ":" …`: RFC 9112 §5
 * allows no whitespace before the colon, and a line starting with whitespace is obs-fold.
 */
function nameEnd(text: string, start: number, end: number): number {
  const colon = text.indexOf(":", start);
  return colon > start && colon < end && isToken(text, start, colon) ? colon : -1;
}

/**
 * What a parse allocates is most of the relay's garbage on a small request (a heap profile gave about a
 * third of its 6.4 KB per request to the two heads), so the parsers below allocate only what they return:
 * lines are found in a scratch array reused from parse to parse, per-field arrays are sized once, start
 * lines are checked without a regular expression, and a head with no Connection field shares one empty
 * token list.
 */
const NO_TOKENS: readonly string[] = Object.freeze([]);
const INCOMPLETE = Object.freeze({ kind: "incomplete" as const });

/**
 * Request fields Node's HTTP server keeps once (it discards repeats); a repeated one is left to Node, so a
 * dev server never sees a value Node would not have given it. Framing fields never reach this list: any
 * request that carries one is handed over. Each has a bit of its own, for a parse to note the ones seen.
 */
const SINGLETON_REQUEST_FIELDS: ReadonlyMap<string, number> = bitPerName([
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

function bitPerName(names: string[]): ReadonlyMap<string, number> {
  if (names.length > 31) throw new Error("one bit per name: at most 31 names");
  return new Map(names.map((name, i) => [name, 1 << i]));
}

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
  /** The Host field's value (a request without one, or with two, is handed over). */
  host: string;
  /** The Cookie fields' values joined as Node joins them (`; `), or undefined without one. */
  cookie: string | undefined;
  /** The Connection field's tokens, lowercased: fields they name are hop-by-hop. */
  connection: readonly string[];
  /** Whether the client asked to close the connection after this exchange. */
  close: boolean;
  /** All field lines, as they came. */
  fields: FieldLines;
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

/**
 * Lowercased field names by spelling. Clients and dev servers use a handful of spellings, so a name is
 * lowercased once, not once per request; the map is emptied when a peer sends too many distinct names.
 */
const LOWER_NAMES = new Map<string, string>();
const MAX_CACHED_NAMES = 1024;

function lowerName(raw: string): string {
  let name = LOWER_NAMES.get(raw);
  if (name === undefined) {
    // `raw` is a slice of a whole head, and V8 keeps the head alive as long as the slice (and its
    // lowercase form, which can be the very same string): the cache keeps copies of the name alone.
    name = ownCopy(raw.toLowerCase());
    if (LOWER_NAMES.size >= MAX_CACHED_NAMES) LOWER_NAMES.clear();
    LOWER_NAMES.set(ownCopy(raw), name);
  }
  return name;
}

/** A string with storage of its own, not a view into a larger one. */
const ownCopy = (s: string): string => Buffer.from(s, "latin1").toString("latin1");

/**
 * A head's field lines as they came: the head's text, and per line its lowercased name and where its value
 * is. Nothing is copied per field: a forwarded head is the kept lines' text, so the relay builds no object
 * per field and lowercases no name twice (a dictionary of fields, built and re-serialized per request,
 * cost more CPU than the rest of the relay's work on a small request).
 */
export class FieldLines {
  /** The head from its first byte through the CRLF of its last field line (no final empty line). */
  readonly text: string;
  /** Lowercased names, in order. */
  readonly names: string[];
  /** Per field: line start, value start, value end (optional whitespace excluded), line end (after CRLF). */
  readonly #bounds: number[];

  /** Room for `count` fields, each then set once (`set`). */
  constructor(text: string, count: number) {
    this.text = text;
    this.names = new Array(count);
    this.#bounds = new Array(4 * count);
  }

  set(
    i: number,
    name: string,
    lineStart: number,
    valueStart: number,
    valueEnd: number,
    lineEnd: number,
  ): void {
    this.names[i] = name;
    const b = 4 * i;
    this.#bounds[b] = lineStart;
    this.#bounds[b + 1] = valueStart;
    this.#bounds[b + 2] = valueEnd;
    this.#bounds[b + 3] = lineEnd;
  }

  value(i: number): string {
    return this.text.slice(this.#bounds[4 * i + 1], this.#bounds[4 * i + 2]);
  }

  lineStart(i: number): number {
    return this.#bounds[4 * i]!;
  }

  lineEnd(i: number): number {
    return this.#bounds[4 * i + 3]!;
  }
}

/**
 * What to do with one field line when a head is forwarded: undefined keeps it as it came, null drops it,
 * and a string replaces it (a whole `name: value` line without its CRLF; the caller's own value, which
 * must hold no CR or LF).
 */
export type FieldEdit = (name: string, fields: FieldLines, i: number) => string | null | undefined;

/** The field lines `edit` keeps, each ending in CRLF; runs of lines kept as they came are one slice. */
function forwardedLines(fields: FieldLines, edit: FieldEdit | undefined): string {
  const { text, names } = fields;
  if (names.length === 0) return "";
  if (!edit) return text.slice(fields.lineStart(0));
  let out = "";
  let run = fields.lineStart(0);
  for (let i = 0; i < names.length; i++) {
    const change = edit(names[i]!, fields, i);
    if (change === undefined) continue;
    out += text.slice(run, fields.lineStart(i));
    if (change !== null) out += `${change}\r\n`;
    run = fields.lineEnd(i);
  }
  return out + text.slice(run);
}

/** Per byte: 0 allowed, 1 never (a control character other than HTAB), 2 CR, 3 LF. */
const BYTE_CLASS = new Uint8Array(256);
for (let b = 0; b < 0x20; b++) BYTE_CLASS[b] = 1;
BYTE_CLASS[0x09] = 0;
BYTE_CLASS[0x7f] = 1;
BYTE_CLASS[0x0d] = 2;
BYTE_CLASS[0x0a] = 3;

/**
 * Line ends found by `lineEnds`, valid until its next call: parsing is synchronous, and each parse is done
 * with them before it returns. A head has at most one line per two bytes.
 */
const LINE_ENDS = new Int32Array(MAX_RESPONSE_HEAD_BYTES / 2);

/**
 * How many lines the head in `buf[0, end)` has, with where each ends in `LINE_ENDS` (the offset of its CR;
 * the final CRLF CRLF's second line excluded), or -1 when the head holds a control character other than
 * HTAB, or a CR or LF that is not part of a CRLF (RFC 9112 §2.2: a recipient may not treat a bare CR as a
 * line end; treating it as anything else is how two parsers come to disagree). One pass over the bytes.
 */
function lineEnds(buf: Buffer, end: number): number {
  let count = 0;
  const last = end - 2;
  for (let i = 0; i < last; i++) {
    const k = BYTE_CLASS[buf[i]!]!;
    if (k === 0) continue;
    if (k === 2 && buf[i + 1] === 0x0a) {
      LINE_ENDS[count++] = i;
      i++;
    } else return -1;
  }
  return count;
}

/**
 * The field lines (each `token ":" OWS value OWS`) of a head of `lines` lines (`LINE_ENDS`), the start line
 * first, or null when one is malformed.
 */
function fieldLinesOf(text: string, lines: number): FieldLines | null {
  const fields = new FieldLines(text, lines - 1);
  for (let k = 1; k < lines; k++) {
    const start = LINE_ENDS[k - 1]! + 2;
    const end = LINE_ENDS[k]!;
    const colon = nameEnd(text, start, end);
    if (colon < 0) return null;
    let valueStart = colon + 1;
    let valueEnd = end;
    while (valueStart < valueEnd && isOws(text.charCodeAt(valueStart))) valueStart++;
    while (valueEnd > valueStart && isOws(text.charCodeAt(valueEnd - 1))) valueEnd--;
    fields.set(k - 1, lowerName(text.slice(start, colon)), start, valueStart, valueEnd, end + 2);
  }
  return fields;
}

/** Whether `text[start, end)` is all visible ASCII (RFC 9110 VCHAR without obs-text): an origin-form target. */
function isVisibleAscii(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

const isOws = (c: number) => c === 0x20 || c === 0x09;

/**
 * The comma-separated tokens of a list field's `value`, trimmed and lowercased, added to `into` (a new
 * array when null); returns the array.
 */
export function addTokens(into: string[] | null, value: string): string[] {
  const tokens = into ?? [];
  for (const token of value.split(",")) {
    const t = token.trim().toLowerCase();
    if (t) tokens.push(t);
  }
  return tokens;
}

const VERSION_SUFFIX = " HTTP/1.1";

/** Parses the request head at the start of `buf`, if the byte relay may forward it. */
export function parseRequestHead(buf: Buffer): RequestParse {
  const end = headEnd(buf, MAX_HEAD_BYTES);
  if (end < 0) return INCOMPLETE;
  if (end === 0) return { kind: "handover", reason: "head too large" };
  const lines = lineEnds(buf, end);
  if (lines < 0) return { kind: "handover", reason: "bare CR or LF, or a control character" };
  const text = buf.toString("latin1", 0, end - 2);
  // `GET|HEAD SP origin-form SP HTTP/1.1`: origin-form only (RFC 9112 §3.2.1), so no absolute-form, no
  // `*`, and a target of visible ASCII.
  const method = text.startsWith("GET ") ? "GET" : text.startsWith("HEAD ") ? "HEAD" : null;
  const targetStart = method === "GET" ? 4 : 5;
  const targetEnd = LINE_ENDS[0]! - VERSION_SUFFIX.length;
  if (
    method === null ||
    targetEnd <= targetStart ||
    text.charCodeAt(targetStart) !== 0x2f ||
    !text.startsWith(VERSION_SUFFIX, targetEnd) ||
    !isVisibleAscii(text, targetStart, targetEnd)
  ) {
    return { kind: "handover", reason: "not a GET or HEAD in origin-form over HTTP/1.1" };
  }
  const fields = fieldLinesOf(text, lines);
  if (!fields) return { kind: "handover", reason: "malformed field line (or obs-fold)" };
  let host: string | undefined;
  let cookie: string | undefined;
  let connection: string[] | null = null;
  let seen = 0;
  const { names } = fields;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    if (HANDED_OVER_FIELDS.has(name)) return { kind: "handover", reason: `request has ${name}` };
    const bit = SINGLETON_REQUEST_FIELDS.get(name);
    if (bit !== undefined) {
      if (seen & bit) return { kind: "handover", reason: `repeated ${name}` };
      seen |= bit;
    }
    if (name === "host") host = fields.value(i);
    else if (name === "cookie")
      cookie = cookie === undefined ? fields.value(i) : `${cookie}; ${fields.value(i)}`;
    else if (name === "connection") connection = addTokens(connection, fields.value(i));
  }
  if (host === undefined) return { kind: "handover", reason: "no Host" };
  return {
    kind: "request",
    head: {
      method,
      target: text.slice(targetStart, targetEnd),
      host,
      cookie,
      connection: connection ?? NO_TOKENS,
      close: connection?.includes("close") ?? false,
      fields,
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
  /** All field lines as they came, framing and connection fields included (serializing re-states those). */
  fields: FieldLines;
  /** The Connection field's tokens, lowercased: fields they name are hop-by-hop. */
  connection: readonly string[];
  /** A HEAD or 304 answer's Content-Length (no body follows it), passed on to the client. */
  contentLength: string | undefined;
  framing: BodyFraming;
  /** Whether the upstream connection may carry another request after this response. */
  reusable: boolean;
  length: number;
}

export type ResponseParse =
  | { kind: "incomplete" }
  | { kind: "invalid"; reason: string }
  | { kind: "response"; head: ResponseHead };

const CONTENT_LENGTH = /^\d{1,15}$/;

/**
 * Parses the response head at the start of `buf`, for a request with `method`. 1xx heads are parsed like
 * any other; the caller skips them (status < 200).
 */
export function parseResponseHead(buf: Buffer, method: string): ResponseParse {
  const end = headEnd(buf, MAX_RESPONSE_HEAD_BYTES);
  if (end < 0) return INCOMPLETE;
  if (end === 0) return { kind: "invalid", reason: "response head too large" };
  const lines = lineEnds(buf, end);
  if (lines < 0) return { kind: "invalid", reason: "bare CR or LF, or a control character" };
  const text = buf.toString("latin1", 0, end - 2);
  // `HTTP/1.x SP 3DIGIT [SP reason]`; the reason's characters are the head's (no control character but
  // HTAB, as lineEnds checked).
  const lineEnd = LINE_ENDS[0]!;
  if (
    !text.startsWith("HTTP/1.") ||
    (text.charCodeAt(7) !== 0x30 && text.charCodeAt(7) !== 0x31) ||
    text.charCodeAt(8) !== 0x20 ||
    !(text.charCodeAt(9) >= 0x31 && text.charCodeAt(9) <= 0x39) ||
    !isDigit(text.charCodeAt(10)) ||
    !isDigit(text.charCodeAt(11)) ||
    (lineEnd !== 12 && (lineEnd < 12 || text.charCodeAt(12) !== 0x20))
  ) {
    return { kind: "invalid", reason: "malformed status line" };
  }
  const fields = fieldLinesOf(text, lines);
  if (!fields) return { kind: "invalid", reason: "malformed field line (or obs-fold)" };
  const http10 = text.charCodeAt(7) === 0x30;
  const status =
    (text.charCodeAt(9) - 0x30) * 100 + (text.charCodeAt(10) - 0x30) * 10 + text.charCodeAt(11) - 0x30;
  // Content-Length: the first value, and whether any other differs.
  let length: string | undefined;
  let lengthsDiffer = false;
  let codings: string[] | null = null;
  let connection: string[] | null = null;
  const { names } = fields;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    if (name === "content-length") {
      const value = fields.value(i);
      if (length === undefined) length = value;
      else if (value !== length) lengthsDiffer = true;
    } else if (name === "transfer-encoding") codings = addTokens(codings, fields.value(i));
    else if (name === "connection") connection = addTokens(connection, fields.value(i));
  }
  // The one Content-Length all the fields agree on, or null when they disagree or it is malformed.
  const agreed = length !== undefined && !lengthsDiffer && CONTENT_LENGTH.test(length) ? length : null;
  let framing: BodyFraming;
  let contentLength: string | undefined;
  if (status < 200 || status === 204 || status === 304 || method === "HEAD") {
    if (status === 101) return { kind: "invalid", reason: "101 to a request that asked for no upgrade" };
    // No body whatever the fields say; a HEAD or 304 answer keeps its Content-Length for the client.
    framing = NO_BODY;
    if (length !== undefined && status >= 200) {
      if (agreed === null) return { kind: "invalid", reason: "bad Content-Length" };
      contentLength = agreed;
    }
  } else if (codings !== null) {
    // Chunked must be the only and final coding, and no Content-Length beside it (RFC 9112 §6.3 items 3, 4).
    if (http10 || length !== undefined)
      return { kind: "invalid", reason: "Transfer-Encoding with Content-Length or HTTP/1.0" };
    if (codings.length !== 1 || codings[0] !== "chunked") {
      return { kind: "invalid", reason: "a transfer coding other than chunked" };
    }
    framing = CHUNKED;
  } else if (length !== undefined) {
    if (agreed === null) return { kind: "invalid", reason: "bad Content-Length" };
    framing = { kind: "length", length: Number(agreed) };
  } else {
    framing = UNTIL_CLOSE;
  }
  const reusable = !http10 && framing.kind !== "close" && !connection?.includes("close");
  return {
    kind: "response",
    head: {
      status,
      reason: lineEnd > 12 ? text.slice(13, lineEnd) : "",
      fields,
      connection: connection ?? NO_TOKENS,
      contentLength,
      framing,
      reusable,
      length: end,
    },
  };
}

const NO_BODY: BodyFraming = Object.freeze({ kind: "none" });
const CHUNKED: BodyFraming = Object.freeze({ kind: "chunked" });
const UNTIL_CLOSE: BodyFraming = Object.freeze({ kind: "close" });

/**
 * The request head to send upstream: the request line, the field lines `edit` keeps (as they came, or
 * rewritten), then `extra` (whole lines, each ending in CRLF, of the caller's own making: no CR or LF in
 * a value).
 */
export function serializeRequestHead(head: RequestHead, edit?: FieldEdit, extra = ""): string {
  return `${head.method} ${head.target} HTTP/1.1\r\n${forwardedLines(head.fields, edit)}${extra}\r\n`;
}

/** Fields about the dev server's connection and framing: the relay re-states its own for the client. */
const FRAMING_AND_CONNECTION: ReadonlySet<string> = new Set([
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
]);

/**
 * The response head to send the client: the status line, the field lines `edit` keeps (framing and
 * connection fields never: they describe the dev server's connection), the framing the relay will honour
 * (the body's own, re-stated), and either `Connection: close` when this is the connection's last
 * response, or, given `keepAliveSeconds`, the `Keep-Alive: timeout=N` node:http sends, so a client stops
 * reusing an idle connection before the server closes it.
 */
export function serializeResponseHead(
  head: ResponseHead,
  close: boolean,
  keepAliveSeconds?: number,
  edit?: FieldEdit,
): string {
  const lines = forwardedLines(head.fields, (name, fields, i) =>
    FRAMING_AND_CONNECTION.has(name) ? null : edit?.(name, fields, i),
  );
  let framing = "";
  if (head.framing.kind === "length") framing = `content-length: ${head.framing.length}\r\n`;
  else if (head.framing.kind === "chunked") framing = "transfer-encoding: chunked\r\n";
  else if (head.contentLength !== undefined) framing = `content-length: ${head.contentLength}\r\n`;
  let connection = "";
  if (close) connection = "connection: close\r\n";
  else if (keepAliveSeconds) connection = `keep-alive: timeout=${keepAliveSeconds}\r\n`;
  return `HTTP/1.1 ${head.status} ${head.reason}\r\n${lines}${framing}${connection}\r\n`;
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
      else if (nameEnd(line, 0, line.length) < 0) return false;
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
