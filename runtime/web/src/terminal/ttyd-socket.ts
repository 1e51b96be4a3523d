/**
 * The browser side of ttyd's protocol, through the control plane's relay: one short-lived token per
 * connection (offered as a subprotocol, never in the URL), `tty` subprotocol, a JSON size message first,
 * then command bytes. The relay adds the box credential; the browser never sees it.
 */
import { api } from "../api.ts";

/** The relay's close codes (runtime/gateway/terminal/close-codes.ts). */
export const Close = {
  Ended: 1000,
  Unauthorized: 4401,
  SessionGone: 4404,
  IdleTimeout: 4408,
  TooMany: 4409,
  RateLimited: 4429,
  Unreachable: 4502,
  Asleep: 4503,
} as const;

export interface TerminalSocketHandlers {
  onOutput(data: Uint8Array): void;
  onTitle(title: string): void;
  onOpen(): void;
  onClose(code: number, reason: string): void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class TerminalSocket {
  #ws: WebSocket | null = null;
  /**
   * Bumped by every connect and close. A connect that was overtaken while its token was on its way (the
   * page left, "Retry now", the browser back online) opens nothing: its socket would have stayed open
   * with nobody to close it, holding a tmux client and writing the output a second time.
   */
  #generation = 0;

  /** Connects, replacing any socket this one had: a page has one terminal socket at most. */
  async connect(
    sessionId: string,
    attempt: number,
    size: { columns: number; rows: number },
    h: TerminalSocketHandlers,
  ) {
    this.close();
    const generation = this.#generation;
    let token: string;
    try {
      ({ token } = await api<{ token: string }>(`/api/v1/sessions/${sessionId}/terminal-token`, {
        method: "POST",
      }));
    } catch (err) {
      if (generation !== this.#generation) return;
      throw err;
    }
    if (generation !== this.#generation) return;
    const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/api/v1/sessions/${sessionId}/terminal`;
    const ws = new WebSocket(url, ["tty", `berth.token.${token}`, `berth.reconnect.${attempt}`]);
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    ws.onopen = () => {
      ws.send(encoder.encode(JSON.stringify(size)));
      h.onOpen();
    };
    ws.onmessage = (e) => {
      if (this.#ws !== ws) return;
      const bytes = new Uint8Array(e.data as ArrayBuffer);
      const command = String.fromCharCode(bytes[0] ?? 0);
      if (command === "0") h.onOutput(bytes.subarray(1));
      else if (command === "1") h.onTitle(decoder.decode(bytes.subarray(1)));
    };
    ws.onclose = (e) => {
      // A socket closed here (replaced or closed on purpose) is nobody's loss: no reconnect for it.
      if (this.#ws !== ws) return;
      this.#ws = null;
      h.onClose(e.code, e.reason);
    };
  }

  get open(): boolean {
    return this.#ws?.readyState === WebSocket.OPEN;
  }

  input(text: string): void {
    if (!this.open) return;
    const body = encoder.encode(text);
    const frame = new Uint8Array(body.length + 1);
    frame[0] = "0".charCodeAt(0);
    frame.set(body, 1);
    this.#ws!.send(frame);
  }

  resize(columns: number, rows: number): void {
    if (this.open) this.#ws!.send(encoder.encode(`1${JSON.stringify({ columns, rows })}`));
  }

  close(): void {
    this.#generation++;
    const ws = this.#ws;
    this.#ws = null;
    ws?.close();
  }
}
