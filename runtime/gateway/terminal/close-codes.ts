/**
 * What the relay tells a browser when its terminal socket ends. A browser only sees a close code and a
 * reason (a refused HTTP upgrade reaches its script as a bare 1006), so every refusal after the Origin and
 * subprotocol checks completes the handshake and closes with one of these. Reasons never carry an address,
 * a token or a credential.
 *
 * `ws` refuses to send 1004, 1005, 1006 and 1015 (reserved: "no status", "abnormal closure"), and ttyd on a
 * libwebsockets build without close frames makes every upstream close look like 1006, so upstream codes are
 * always mapped, never echoed.
 */

export interface CloseSpec {
  code: number;
  reason: string;
}

export const TerminalClose = {
  /** Upstream closed normally: the attach process exited 0 (tmux detached or the session was killed). */
  ENDED: 1000,
  /** This control plane is shutting down; reconnect (another replica or this one after restart). */
  GOING_AWAY: 1001,
  /** Upstream failed in a way the client cannot fix (the box refused the relay's credential, an error). */
  TERMINAL_ERROR: 1011,
  /** The client broke the protocol: the first message was not the JSON init, or it never came. */
  BAD_REQUEST: 4400,
  /** Token missing, malformed, expired, already used, or for another session or user: mint a new one. */
  UNAUTHORIZED: 4401,
  /** The session is closed, does not exist, or is not yours. */
  SESSION_GONE: 4404,
  /** No terminal input or output for the idle timeout. */
  IDLE_TIMEOUT: 4408,
  /** This session already has the maximum number of open terminals. */
  TOO_MANY_SOCKETS: 4409,
  /** Too many terminal sockets opened by this user recently. */
  RATE_LIMITED: 4429,
  /** The box could not be reached, refused the connection, or the connection to it was lost. */
  BOX_UNREACHABLE: 4502,
  /** The workspace is not ready (hibernated, starting, waking, failed): wake it or wait. */
  BOX_ASLEEP: 4503,
} as const;

export const close = {
  ended: { code: TerminalClose.ENDED, reason: "session ended" },
  goingAway: { code: TerminalClose.GOING_AWAY, reason: "server restarting" },
  terminalError: { code: TerminalClose.TERMINAL_ERROR, reason: "terminal error" },
  badInit: { code: TerminalClose.BAD_REQUEST, reason: "the first message must be the JSON init" },
  initTimeout: { code: TerminalClose.BAD_REQUEST, reason: "no init message" },
  tooMuchEarlyInput: { code: TerminalClose.BAD_REQUEST, reason: "too much input before the terminal opened" },
  unauthorized: (why: string): CloseSpec => ({
    code: TerminalClose.UNAUTHORIZED,
    reason: `unauthorized: ${why}`,
  }),
  sessionGone: { code: TerminalClose.SESSION_GONE, reason: "session gone" },
  idleTimeout: { code: TerminalClose.IDLE_TIMEOUT, reason: "idle timeout" },
  tooManySockets: (max: number): CloseSpec => ({
    code: TerminalClose.TOO_MANY_SOCKETS,
    reason: `too many terminals for this session (max ${max})`,
  }),
  rateLimited: (retryAfterSeconds: number): CloseSpec => ({
    code: TerminalClose.RATE_LIMITED,
    reason: `rate limited; retry in ${retryAfterSeconds}s`,
  }),
  boxUnreachable: { code: TerminalClose.BOX_UNREACHABLE, reason: "box unreachable" },
  connectionLost: { code: TerminalClose.BOX_UNREACHABLE, reason: "box connection lost" },
  boxAsleep: (state: string): CloseSpec => ({
    code: TerminalClose.BOX_ASLEEP,
    reason: state === "ready" ? "box asleep" : `box asleep (workspace ${state})`,
  }),
} as const;

/** Codes `ws` lets a peer send (`ws/lib/validation.js` `isValidStatusCode`). */
export function isSendableCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
  );
}

/**
 * Maps the upstream's close code to what the client gets, when the database has nothing more specific to
 * say (the caller checks first whether the session was closed or the box went to sleep).
 * - 1000 and 1005 (a close frame without a code): the attach process ended normally.
 * - 1006 (no close frame) and anything unsendable: the connection was lost. ttyd on Debian's lws sends no
 *   close frame even for exit 0, so this is also what a normal exit looks like there; the client
 *   reconnects and finds out (the tmux session is still there, or the session is gone).
 * - 1001 (the box's endpoint shutting down): the box is going away, i.e. unreachable.
 * - 1008 (ttyd: AuthToken refused) and 1011 (the process failed): a terminal error the client cannot fix.
 * - 1009 (message too big) and other sendable codes: passed through with a generic reason.
 * The upstream's reason text is never forwarded.
 */
export function mapUpstreamClose(code: number): CloseSpec {
  switch (code) {
    case 1000:
    case 1005:
      return close.ended;
    case 1001:
      return close.boxUnreachable;
    case 1006:
      return close.connectionLost;
    case 1008:
    case 1011:
      return close.terminalError;
  }
  if (!isSendableCloseCode(code)) return close.connectionLost;
  return { code, reason: "terminal closed" };
}
