/**
 * The active checks of one box's terminal endpoint, made through the upstream resolver like any traffic.
 * The agent's own /healthz listens on the box's loopback only, so the terminal endpoint is what the control
 * plane can see:
 *  - http: `GET /healthz` answers 200 on the built-in server; ttyd has no such path (it answers 404 after
 *    authentication), so then `GET /` must answer 200 (ttyd's index page; the body is not read).
 *  - handshake: the WebSocket upgrade the relay makes (subprotocol `tty`, the box's Basic credential) must
 *    answer 101 with `tty`. No init message is sent, so neither ttyd nor the built-in server starts a
 *    process or touches a tmux session; the socket is closed at once.
 * The credential goes only to the box, over the connection the resolver opened to one of its addresses.
 * Outcomes are short and carry no address, since they are stored and may be shown to the owner.
 */
import { request } from "node:http";
import { WebSocket } from "ws";
import { basicAuthHeader, TTY_SUBPROTOCOL, WS_PATH } from "../../box/terminal/protocol.ts";
import type { CheckOutcome } from "./health-rules.ts";
import {
  type BoxAddresses,
  BoxUnreachableError,
  forWebSocket,
  type UpstreamCreateConnection,
  type UpstreamPath,
  type UpstreamResolver,
} from "./path-resolver.ts";

/** A session name no user picks by accident; it is never created, because no init is sent. */
export const PROBE_SESSION = "berth-health-probe";

export interface ProbeBox extends BoxAddresses {
  terminalPort: number;
}

export interface ActiveOutcome extends CheckOutcome {
  /** Which path carried the check, when a connection was made. */
  path?: UpstreamPath;
}

function failure(err: unknown, signal: AbortSignal): string {
  if (err instanceof BoxUnreachableError) return "unreachable";
  if (signal.aborted) return "timeout";
  const code = (err as NodeJS.ErrnoException).code;
  return `connection failed${code ? ` (${code})` : ""}`;
}

/**
 * The status of an authenticated `GET` on a box's terminal endpoint (ttyd or the built-in server), dialled
 * by the upstream resolver or, for a caller that must test one exact address, straight to it.
 */
export function terminalGet(
  where: { createConnection: UpstreamCreateConnection } | { host: string; port: number },
  path: string,
  credential: string,
  signal: AbortSignal,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        ...("createConnection" in where
          ? { host: "box", createConnection: where.createConnection }
          : { host: where.host, port: where.port, agent: false }),
        path,
        headers: { authorization: basicAuthHeader(credential) },
        signal,
      },
      (res) => {
        resolve(res.statusCode ?? 0);
        // Only the status matters; ttyd's index page is not worth downloading every minute.
        res.destroy();
      },
    );
    req.on("error", reject);
    req.end();
  });
}

function get(
  upstream: UpstreamResolver,
  box: ProbeBox,
  path: string,
  credential: string,
  signal: AbortSignal,
  onPath: (path: UpstreamPath) => void,
): Promise<number> {
  const createConnection = upstream.createConnection(box, box.terminalPort, { signal, onPath });
  return terminalGet({ createConnection }, path, credential, signal);
}

export async function checkHttp(
  upstream: UpstreamResolver,
  box: ProbeBox,
  credential: string,
  timeoutMs: number,
): Promise<ActiveOutcome> {
  const signal = AbortSignal.timeout(timeoutMs);
  let via: UpstreamPath | undefined;
  const onPath = (p: UpstreamPath) => {
    via = p;
  };
  try {
    let status = await get(upstream, box, "/healthz", credential, signal, onPath);
    if (status === 404) status = await get(upstream, box, "/", credential, signal, onPath);
    return { ok: status === 200, detail: status === 200 ? "ok" : `http ${status}`, path: via };
  } catch (err) {
    return { ok: false, detail: failure(err, signal), path: via };
  }
}

export function checkHandshake(
  upstream: UpstreamResolver,
  box: ProbeBox,
  credential: string,
  timeoutMs: number,
): Promise<ActiveOutcome> {
  const signal = AbortSignal.timeout(timeoutMs);
  let via: UpstreamPath | undefined;
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://box${WS_PATH}?arg=${PROBE_SESSION}`, [TTY_SUBPROTOCOL], {
      headers: { authorization: basicAuthHeader(credential) },
      handshakeTimeout: timeoutMs,
      perMessageDeflate: false,
      createConnection: forWebSocket(
        upstream.createConnection(box, box.terminalPort, {
          signal,
          onPath: (p) => {
            via = p;
          },
        }),
      ),
    });
    let settled = false;
    const settle = (outcome: CheckOutcome) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      resolve({ ...outcome, path: via });
      ws.terminate();
    };
    const onAbort = () => settle({ ok: false, detail: "timeout" });
    signal.addEventListener("abort", onAbort, { once: true });
    ws.once("open", () =>
      settle(
        ws.protocol === TTY_SUBPROTOCOL
          ? { ok: true, detail: "ok" }
          : { ok: false, detail: "upgrade accepted without the tty subprotocol" },
      ),
    );
    ws.once("unexpected-response", (_req, res) => {
      settle({ ok: false, detail: `upgrade refused (${res.statusCode})` });
      res.destroy();
    });
    ws.on("error", (err) => settle({ ok: false, detail: failure(err, signal) }));
  });
}

/** Passive health: the agent's heartbeat, judged by its age. */
export function checkHeartbeat(ageMs: number | null, staleMs: number): CheckOutcome {
  if (ageMs === null) return { ok: false, detail: "never heartbeated" };
  const seconds = Math.round(ageMs / 1000);
  return ageMs <= staleMs
    ? { ok: true, detail: `last ${seconds}s ago` }
    : { ok: false, detail: `none for ${seconds}s` };
}
