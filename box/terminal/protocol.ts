/**
 * ttyd's WebSocket wire protocol (ttyd 1.7.7, `src/server.h` and `src/protocol.c`), shared by the built-in
 * server, the test client and the control plane's relay. Every message starts with one command byte.
 */

/** The WebSocket subprotocol ttyd requires; without it ttyd never spawns anything. */
export const TTY_SUBPROTOCOL = "tty";
/** The WebSocket path, as in ttyd without `-b`. */
export const WS_PATH = "/ws";

/** Client → server. The init message is JSON (first byte `{`) and must come first. */
export const ClientCommand = {
  INPUT: 0x30, // '0': raw bytes for the pty
  RESIZE_TERMINAL: 0x31, // '1': {"columns":N,"rows":N}
  PAUSE: 0x32, // '2': stop reading the pty
  RESUME: 0x33, // '3': start reading again
  JSON_DATA: 0x7b, // '{': the init message itself
} as const;

/** Server → client, always in binary frames. */
export const ServerCommand = {
  OUTPUT: 0x30, // '0': raw pty bytes
  SET_WINDOW_TITLE: 0x31, // '1': "<command> (<hostname>)"
  SET_PREFERENCES: 0x32, // '2': JSON of client options
} as const;

/**
 * What ttyd's attach command prints when tmux exits normally (the session ended, was killed, or the client
 * detached): a private OSC sequence, which terminals ignore. ttyd then closes without a close frame, and
 * when the process exits right after its last output ttyd may drop that output, so the command waits
 * after printing this until the connection closes, and the relay, which sees it, closes both legs as
 * "session ended" (the built-in endpoint closes with 1000 itself).
 */
export const ATTACH_ENDED_MARKER = "\x1b]6973;berth-attach-ended\x07";

/** ttyd closes with 1008 when the init message's AuthToken is wrong or missing. */
export const CLOSE_POLICY_VIOLATION = 1008;
export const CLOSE_NORMAL = 1000;
/**
 * Process exited non-zero. ttyd uses 1006, which `ws` refuses to send (it is reserved for "no close
 * frame"); 1011 is the nearest code a peer may send. Don't read exit status from close codes anyway.
 */
export const CLOSE_PROCESS_FAILED = 1011;

export interface InitMessage {
  AuthToken: string;
  columns: number;
  rows: number;
}

export interface TerminalSize {
  columns: number;
  rows: number;
}

const MAX_DIMENSION = 1000;

/** ttyd's credential form, the base64 of `user:password`; the Basic header and the AuthToken both carry it. */
export function encodeCredential(credential: string): string {
  if (!credential.includes(":")) throw new Error("terminal credential must have the form user:password");
  return Buffer.from(credential, "utf8").toString("base64");
}

export function basicAuthHeader(credential: string): string {
  return `Basic ${encodeCredential(credential)}`;
}

export function encodeInit(authToken: string, size: TerminalSize): Buffer {
  const init: InitMessage = { AuthToken: authToken, columns: size.columns, rows: size.rows };
  return Buffer.from(JSON.stringify(init), "utf8");
}

export function encodeInput(data: string | Uint8Array): Buffer {
  const body = typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data);
  return Buffer.concat([Buffer.of(ClientCommand.INPUT), body]);
}

export function encodeResize(size: TerminalSize): Buffer {
  return Buffer.concat([Buffer.of(ClientCommand.RESIZE_TERMINAL), Buffer.from(JSON.stringify(size))]);
}

export function encodeServerMessage(command: number, body: string | Uint8Array): Buffer {
  const payload = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  return Buffer.concat([Buffer.of(command), payload]);
}

function dimension(value: unknown): number | undefined {
  return typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= MAX_DIMENSION
    ? value
    : undefined;
}

/**
 * Parses a size from an init or resize payload. ttyd reads each field if present; out-of-range or missing
 * fields yield undefined here so the caller keeps its current size instead of making a 0x0 pty.
 */
export function parseSize(json: unknown): Partial<TerminalSize> {
  if (typeof json !== "object" || json === null) return {};
  const o = json as Record<string, unknown>;
  const size: Partial<TerminalSize> = {};
  const columns = dimension(o.columns);
  const rows = dimension(o.rows);
  if (columns !== undefined) size.columns = columns;
  if (rows !== undefined) size.rows = rows;
  return size;
}

/**
 * A size from an untrusted resize or init payload, each dimension clamped into 1..MAX_DIMENSION (ttyd itself
 * takes any number and cuts it to 16 bits: 70000 rows became 4464). Null unless both are finite numbers.
 */
export function clampSize(json: unknown): TerminalSize | null {
  if (typeof json !== "object" || json === null) return null;
  const { columns, rows } = json as Record<string, unknown>;
  if (typeof columns !== "number" || typeof rows !== "number") return null;
  if (!Number.isFinite(columns) || !Number.isFinite(rows)) return null;
  const clamp = (n: number) => Math.min(MAX_DIMENSION, Math.max(1, Math.trunc(n)));
  return { columns: clamp(columns), rows: clamp(rows) };
}

/** Returns the parsed JSON object of an init message, or null when it is not a JSON object. */
export function parseInit(data: Buffer): Record<string, unknown> | null {
  if (data[0] !== ClientCommand.JSON_DATA) return null;
  try {
    const value: unknown = JSON.parse(data.toString("utf8"));
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}
