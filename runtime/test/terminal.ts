/** Shared by the terminal relay's tests and its benchmark: mint a token, open a terminal through the relay. */
import { TtydClient } from "../../box/terminal/client.ts";
import type { TerminalSize } from "../../box/terminal/protocol.ts";
import { RECONNECT_PROTOCOL_PREFIX, TOKEN_PROTOCOL_PREFIX } from "../gateway/terminal/gateway.ts";

export interface MintResult {
  status: number;
  token?: string;
  expiresAt?: string;
  // biome-ignore lint/suspicious/noExplicitAny: error bodies are asserted loosely
  body: any;
}

/** `POST /api/v1/sessions/:id/terminal-token` with a Bearer token (local mode: the owner's login token). */
export async function mintTerminalToken(
  baseUrl: string,
  sessionId: string,
  bearer: string,
): Promise<MintResult> {
  const res = await fetch(`${baseUrl}/api/v1/sessions/${sessionId}/terminal-token`, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}` },
  });
  const body = await res.json();
  return { status: res.status, token: body.token, expiresAt: body.expiresAt, body };
}

export interface RelayConnectOptions {
  /** The control plane's base URL, `http://host:port`. */
  baseUrl: string;
  sessionId: string;
  token?: string;
  /** Default: the base URL's origin; null sends none. */
  origin?: string | null;
  reconnect?: number;
  /** Replaces the whole subprotocol list. */
  protocols?: string[];
  /** Appended to the path verbatim (tests smuggle `?arg=` with it). */
  suffix?: string;
  /** Replaces the session id in the path. */
  pathSegment?: string;
  size?: TerminalSize;
  headers?: Record<string, string>;
}

/** A ttyd-protocol client through the relay: the init carries no credential (the relay injects it). */
export function connectThroughRelay(opts: RelayConnectOptions): Promise<TtydClient> {
  const base = opts.baseUrl.replace(/^http/, "ws");
  const protocols = opts.protocols ?? [
    "tty",
    ...(opts.token ? [`${TOKEN_PROTOCOL_PREFIX}${opts.token}`] : []),
    ...(opts.reconnect !== undefined ? [`${RECONNECT_PROTOCOL_PREFIX}${opts.reconnect}`] : []),
  ];
  const origin = opts.origin === undefined ? new URL(opts.baseUrl).origin : opts.origin;
  const headers: Record<string, string> = { ...opts.headers };
  if (origin !== null) headers.Origin = origin;
  return TtydClient.connect({
    url: `${base}/api/v1/sessions/${opts.pathSegment ?? opts.sessionId}/terminal${opts.suffix ?? ""}`,
    protocols,
    headers,
    authToken: "",
    size: opts.size ?? { columns: 120, rows: 40 },
  });
}

/**
 * Calls `sample` right after every send on `ws` (e.g. a relay's leg). A socket's bufferedAmount only grows
 * by a send, so sampling there sees its true peak, which a timer-driven sampler can miss on a busy machine.
 */
export function afterEverySend<T extends { send: (...args: never[]) => unknown }>(
  ws: T,
  sample: () => void,
): void {
  const send = ws.send.bind(ws) as (...args: unknown[]) => void;
  ws.send = ((...args: unknown[]) => {
    send(...args);
    sample();
  }) as T["send"];
}
