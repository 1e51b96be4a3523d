/**
 * Pure request handling for the preview proxy: which preview a request names (path form or host form),
 * whether its path is safe to forward, and which headers reach the dev server.
 */
import type { IncomingHttpHeaders } from "node:http";
import { isUuid } from "../../platform/ids.ts";
import {
  addTokens,
  type RequestHead,
  type ResponseHead,
  serializeRequestHead,
  serializeResponseHead,
} from "./http1.ts";

export const PATH_PREFIX = "/api/v1/previews/";
/** Paths on a preview's own host that the proxy answers itself (sign-in code, share link). */
export const HOST_RESERVED_PREFIX = "/__berth/";
export const API_SESSION_COOKIE = "berth_session";

export type PreviewTarget =
  | { form: "path"; previewId: string; prefix: string; forwardPath: string }
  | { form: "host"; previewId: string; forwardPath: string };

/** A request that is the proxy's but names no preview it could serve (refused with the given page). */
export type Refused = { form: "refused"; page: "not_found" | "bad_path" };

export type Classified = PreviewTarget | Refused | null;

const PATH_FORM = /^\/api\/v1\/previews\/([^/?#]+)(\/[^?#]*)?(\?[^#]*)?$/;

/**
 * API routes that live under the path form's prefix. Only these methods on exactly these paths are the
 * API's; the same paths with other methods (GET /share) still reach the dev server.
 */
const API_SUBROUTES: Record<string, readonly string[]> = { "/share": ["POST", "DELETE"], "/open": ["POST"] };

/** The hostname of a Host header, lowercased, without port or trailing dot. */
export function hostnameOf(host: string | undefined): string {
  if (!host) return "";
  const h = host.toLowerCase();
  const name = h.startsWith("[") ? h.slice(0, h.indexOf("]") + 1) : h.replace(/:\d*$/, "");
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/**
 * Which preview this request is for. Anything on the preview domain is the proxy's, even when it names
 * no preview, so a preview host never falls through to the API. Returns null for requests that are not
 * the proxy's at all.
 */
export function classify(
  method: string,
  rawUrl: string,
  host: string | undefined,
  previewDomain: string | undefined,
): Classified {
  if (previewDomain) {
    const name = hostnameOf(host);
    if (name === previewDomain || name.endsWith(`.${previewDomain}`)) {
      const label = name.slice(0, -(previewDomain.length + 1));
      if (!isUuid(label)) return { form: "refused", page: "not_found" };
      return { form: "host", previewId: label.toLowerCase(), forwardPath: rawUrl };
    }
  }
  if (!rawUrl.startsWith("/")) {
    // An absolute-URI request line (`GET http://other/api/v1/previews/…`): never forwarded anywhere.
    try {
      if (new URL(rawUrl).pathname.startsWith(PATH_PREFIX)) return { form: "refused", page: "bad_path" };
    } catch {
      // not a URL: not ours
    }
    return null;
  }
  if (!rawUrl.startsWith(PATH_PREFIX)) return null;
  const m = PATH_FORM.exec(rawUrl);
  if (!m?.[2]) return null; // `/api/v1/previews/<id>` itself belongs to the API
  const [, id, rest, query = ""] = m;
  if (API_SUBROUTES[rest]?.includes(method)) return null;
  return {
    form: "path",
    previewId: id!.toLowerCase(),
    prefix: `${PATH_PREFIX}${id}`,
    forwardPath: `${rest}${query}`,
  };
}

/** A `.` or `..` segment. */
const DOT_SEGMENT = /\/\.\.?(?:\/|$)/;

/**
 * Whether a path may be forwarded: origin-form only (no absolute URI, no `*`), and no segment that a
 * server could resolve upward (`..`, `.`, their percent-encodings, backslashes, encoded slashes around dots).
 */
export function isSafePath(path: string): boolean {
  if (!path.startsWith("/") || path.startsWith("//")) return false;
  const pathname = path.split("?", 1)[0]!;
  if (pathname.includes("\\")) return false;
  // Nothing percent-encoded (most requests): the segments are as written.
  if (!pathname.includes("%")) return !DOT_SEGMENT.test(pathname);
  for (const segment of pathname.split("/")) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return false;
    }
    if (decoded.includes("\\") || decoded.includes("\0")) return false;
    if (decoded.split("/").some((part) => part === "." || part === "..")) return false;
  }
  return true;
}

/** Per RFC 9110 §7.6.1, plus the legacy ones proxies still meet. */
const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "upgrade",
];

/** The tokens of a Connection field as node:http and undici give it (a string, or an array of repeats). */
function connectionTokens(value: string | string[] | undefined): string[] {
  const tokens: string[] = [];
  if (value !== undefined) addTokens(tokens, Array.isArray(value) ? value.join(",") : value);
  return tokens;
}

/** Client-supplied claims about the client (ours replace them): `X-Forwarded-*`, `Forwarded`, `X-Real-IP`. */
const isForwardingField = (name: string) =>
  name.startsWith("x-forwarded-") || name === "forwarded" || name === "x-real-ip";

/**
 * Whether a request field (lowercased name) stays out of what a dev server gets: hop-by-hop ones,
 * including the names the request's Connection field lists (`connection`: its tokens), the client's
 * forwarding claims, and Authorization (the API's credential). The Cookie field is filtered, not dropped
 * (`withoutCookies`).
 */
export function dropsRequestField(name: string, connection: readonly string[]): boolean {
  return (
    HOP_BY_HOP.includes(name) ||
    connection.includes(name) ||
    isForwardingField(name) ||
    name === "authorization"
  );
}

/** Whether a response field (lowercased name) stays out of what the client gets: the hop-by-hop ones. */
export function dropsResponseField(name: string, connection: readonly string[]): boolean {
  return HOP_BY_HOP.includes(name) || connection.includes(name);
}

/** Ours, whichever form set them: the API session, the host-form preview cookie in both spellings. */
const OUR_COOKIES: ReadonlySet<string> = new Set([
  API_SESSION_COOKIE,
  "berth_preview",
  "__Host-berth_preview",
]);
/** Clerk's (hosted mode; @clerk/backend's `Cookies`), each with an optional `_<instance suffix>`. */
const CLERK_COOKIE =
  /^(__session|__refresh|__client_uat|__clerk_db_jwt|__clerk_handshake|__clerk_handshake_nonce|__clerk_redirect_count)(_[A-Za-z0-9_-]+)?$/;

/**
 * A sign-in credential of ours or Clerk's: never forwarded to a dev server (it would act as the user), and
 * never settable by one (a planted `__session` would make the user's next API GET run as the planter).
 */
export function isCredentialCookie(name: string): boolean {
  return OUR_COOKIES.has(name) || (name.startsWith("__") && CLERK_COOKIE.test(name));
}

const cookieName = (c: string) => c.slice(0, Math.max(0, c.indexOf("="))).trim();

/** The Cookie header without the cookies `drop` names; undefined when nothing is left. */
export function withoutCookies(
  header: string | undefined,
  drop: (name: string) => boolean = isCredentialCookie,
): string | undefined {
  if (!header) return undefined;
  let kept: string | undefined;
  for (const part of header.split(";")) {
    const c = part.trim();
    if (c && !drop(cookieName(c))) kept = kept === undefined ? c : `${kept}; ${c}`;
  }
  return kept;
}

export interface ForwardContext {
  remoteAddress: string | undefined;
  /** The scheme the client used (from the public URL; the control plane is the edge). */
  proto: "http" | "https";
  /** Path form: the prefix the app is mounted under. */
  prefix?: string;
  websocket: boolean;
}

/**
 * Rewrites `headers` in place for the dev server: hop-by-hop headers, the API's and the proxy's own
 * credentials and any client-supplied forwarding headers go; our X-Forwarded-* come in. A WebSocket
 * handshake keeps `Connection: Upgrade` and `Upgrade`, which http-proxy needs.
 */
export function sanitizeRequestHeaders(headers: IncomingHttpHeaders, fwd: ForwardContext): void {
  const upgrade = headers.upgrade;
  const connection = connectionTokens(headers.connection);
  for (const name in headers) if (dropsRequestField(name, connection)) delete headers[name];
  const cookie = withoutCookies(headers.cookie);
  if (cookie) headers.cookie = cookie;
  else delete headers.cookie;
  if (fwd.websocket && upgrade) {
    headers.connection = "Upgrade";
    headers.upgrade = upgrade;
  }
  if (fwd.remoteAddress) headers["x-forwarded-for"] = fwd.remoteAddress;
  headers["x-forwarded-proto"] = fwd.websocket ? (fwd.proto === "https" ? "wss" : "ws") : fwd.proto;
  if (headers.host) headers["x-forwarded-host"] = headers.host;
  if (fwd.prefix) headers["x-forwarded-prefix"] = fwd.prefix;
}

/**
 * The byte relay's request head for the dev server (host form, no upgrade): the same fields
 * `sanitizeRequestHeaders` leaves, with the client's other lines as they came. `cookie` is what
 * `withoutCookies` leaves of the request's Cookie (a caller that has it from an identical header passes it).
 */
export function forwardedRequestHead(
  head: RequestHead,
  fwd: Pick<ForwardContext, "remoteAddress" | "proto">,
  cookie: string | undefined = withoutCookies(head.cookie),
): string {
  const { connection } = head;
  // Fields the client's Connection names are hop-by-hop, Cookie and Host among them.
  const hopCookie = connection.includes("cookie");
  const hopHost = connection.includes("host");
  let extra = cookie && !hopCookie ? `cookie: ${cookie}\r\n` : "";
  if (fwd.remoteAddress) extra += `x-forwarded-for: ${fwd.remoteAddress}\r\n`;
  extra += `x-forwarded-proto: ${fwd.proto}\r\n`;
  if (!hopHost) extra += `x-forwarded-host: ${head.host}\r\n`;
  return serializeRequestHead(
    head,
    (name) => (name === "cookie" || dropsRequestField(name, connection) ? null : undefined),
    extra,
  );
}

/** Response headers the client must not get from the dev server. */
export function sanitizeResponseHeaders(headers: IncomingHttpHeaders): void {
  const connection = connectionTokens(headers.connection);
  for (const name in headers) if (dropsResponseField(name, connection)) delete headers[name];
  // A dev server must not overwrite or plant our credentials (session fixation on the API's host).
  // Node's parser always gives an array; undici gives a lone Set-Cookie as a plain string.
  const setCookie = headers["set-cookie"] as string | string[] | undefined;
  if (setCookie) {
    const kept = (Array.isArray(setCookie) ? setCookie : [setCookie]).filter(
      (c) => !isCredentialCookie(cookieName(c)),
    );
    if (kept.length) headers["set-cookie"] = kept;
    else delete headers["set-cookie"];
  }
}

/**
 * The byte relay's response head for the client: the same fields `sanitizeResponseHeaders` leaves (the
 * dev server's other lines as they came), each Location passed through `location`.
 */
export function forwardedResponseHead(
  head: ResponseHead,
  close: boolean,
  keepAliveSeconds: number,
  location: (value: string) => string,
): string {
  const { connection } = head;
  return serializeResponseHead(head, close, keepAliveSeconds, (name, fields, i) => {
    if (dropsResponseField(name, connection)) return null;
    if (name === "set-cookie") return isCredentialCookie(cookieName(fields.value(i))) ? null : undefined;
    if (name !== "location") return undefined;
    const value = fields.value(i);
    const rewritten = location(value);
    return rewritten === value ? undefined : `location: ${rewritten}`;
  });
}

/** Keeps a dev server's redirect inside the preview and free of the box's address. */
export function rewriteLocation(
  location: string,
  upstreamAuthorities: string | readonly string[],
  prefix: string | undefined,
): string {
  let out = location;
  try {
    const u = new URL(location);
    // Any address the box is reached on (public or tailnet): whichever the dev server saw, it never leaks.
    const own = (typeof upstreamAuthorities === "string" ? [upstreamAuthorities] : upstreamAuthorities).some(
      (a) => u.host === a || u.hostname === a.replace(/:\d+$/, ""),
    );
    if (own) out = `${u.pathname}${u.search}${u.hash}`;
  } catch {
    // relative: keep as is
  }
  const mounted = prefix && (out === prefix || out.startsWith(`${prefix}/`)); // an app that knows its base
  if (prefix && !mounted && out.startsWith("/") && !out.startsWith("//")) out = `${prefix}${out}`;
  return out;
}

/**
 * A same-host path for `next` after sign-in; anything else (another host, `//x`, `/\x`) becomes `/`. So do
 * control characters: browsers drop tabs and newlines from a URL before resolving it (`/\t/x` is `//x`),
 * and a CR or LF could not be sent in a Location anyway.
 */
export function safeNext(next: string | null): string {
  if (!next?.startsWith("/") || next.startsWith("//") || next.includes("\\")) return "/";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
  if (/[\x00-\x1f\x7f]/.test(next)) return "/";
  return isSafePath(next) ? next : "/";
}

/** `<scheme>://<previewId>.<domain>[:port]`: the preview's own origin, on the public URL's scheme and port. */
export function previewHostOrigin(publicUrl: string, previewDomain: string, previewId: string): string {
  const u = new URL(publicUrl);
  return `${u.protocol}//${previewId}.${previewDomain}${u.port ? `:${u.port}` : ""}`;
}
