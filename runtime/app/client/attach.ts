/**
 * `berth attach`: a workspace's tmux session in the user's own terminal, through the control plane's
 * terminal relay (ttyd's protocol, box/terminal/protocol.ts). The terminal runs raw; a window resize is sent
 * on SIGWINCH; a dropped connection is retried with backoff, and since the session is tmux on the box,
 * re-attaching redraws the screen exactly as it was. Ctrl-] then d detaches and leaves the session running.
 */

import { WebSocket } from "ws";
import { encodeInput, encodeResize, ServerCommand } from "../../../box/terminal/protocol.ts";
import { type ApiClient, ClientError, Exit } from "./api.ts";

/** Ctrl-]: the first key of the detach sequence (then `d`). Ctrl-] twice sends one Ctrl-]. */
export const DETACH_PREFIX = 0x1d;
export const DETACH_KEY = "d".charCodeAt(0);

const MAX_PENDING_INPUT = 64 * 1024;

/** The relay's close codes a client acts on (runtime/gateway/terminal/close-codes.ts; in the OpenAPI document). */
const Close = { ENDED: 1000, UNAUTHORIZED: 4401, SESSION_GONE: 4404, ASLEEP: 4503 } as const;

export interface AttachIo {
  stdin: NodeJS.ReadStream;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

export interface AttachOptions {
  sessionId: string;
  sessionName: string;
  /** Called when the relay says the box is asleep; resolves true once it is ready again. */
  onAsleep: () => Promise<boolean>;
  maxAttempts?: number;
}

type Outcome = { kind: "detached" } | { kind: "ended" } | { kind: "closed"; code: number; reason: string };

/** Splits keyboard input into bytes for the box and the detach sequence. */
export class DetachDetector {
  #armed = false;
  /** The bytes to send, and whether the detach sequence completed (bytes after it are dropped). */
  feed(chunk: Buffer): { send: Buffer; detach: boolean } {
    const out: number[] = [];
    for (const byte of chunk) {
      if (this.#armed) {
        this.#armed = false;
        if (byte === DETACH_KEY) return { send: Buffer.from(out), detach: true };
        out.push(DETACH_PREFIX);
        if (byte !== DETACH_PREFIX) out.push(byte);
      } else if (byte === DETACH_PREFIX) {
        this.#armed = true;
      } else {
        out.push(byte);
      }
    }
    return { send: Buffer.from(out), detach: false };
  }
}

export async function attachTerminal(api: ApiClient, io: AttachIo, options: AttachOptions): Promise<number> {
  const { stdin, stdout, stderr } = io;
  const maxAttempts = options.maxAttempts ?? 30;
  const size = () => ({ columns: stdout.columns || 80, rows: stdout.rows || 24 });
  const raw = stdin.isTTY === true;
  const note = (text: string) => stderr.write(`\r\n[berth: ${text}]\r\n`);
  const detector = new DetachDetector();
  let socket: WebSocket | null = null;
  let opened = false;
  let detach: (() => void) | null = null;

  // Keys typed while (re)connecting are kept, up to a limit, and sent once the terminal is open: typing
  // right after `berth attach` must not lose the first keystrokes.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const onInput = (chunk: Buffer) => {
    const { send, detach: wanted } = detector.feed(chunk);
    if (send.length && socket?.readyState === WebSocket.OPEN && opened) socket.send(encodeInput(send));
    else if (send.length && pendingBytes + send.length <= MAX_PENDING_INPUT) {
      pending.push(send);
      pendingBytes += send.length;
    }
    if (wanted) detach?.();
  };
  const onResize = () => {
    if (socket?.readyState === WebSocket.OPEN) socket.send(encodeResize(size()));
  };

  // Killed or hung up: give the user's terminal back in cooked mode before going.
  const onSignal = (signal: NodeJS.Signals) => {
    if (raw) stdin.setRawMode(false);
    socket?.close(1000, "client exiting");
    process.exit(signal === "SIGHUP" ? 129 : 143);
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGHUP", onSignal);
  if (raw) stdin.setRawMode(true);
  stdin.on("data", onInput);
  stdin.resume();
  stdout.on("resize", onResize);
  try {
    let failures = 0;
    let attempt = 0;
    for (;;) {
      const minted = await api
        .call<{ protocols: string[] }>("POST", `/api/v1/sessions/${options.sessionId}/terminal-token`, {})
        .catch((err: unknown): Outcome => {
          if (!(err instanceof ClientError)) throw err;
          if (err.exitCode === Exit.CONFLICT)
            return { kind: "closed", code: Close.ASLEEP, reason: "not ready" };
          // The control plane is unreachable, restarting or rate-limiting: like a dropped socket, retry.
          if (err.exitCode === Exit.UNREACHABLE || err.exitCode === Exit.FAILED) {
            return { kind: "closed", code: 0, reason: err.message };
          }
          throw err;
        });
      let outcome: Outcome;
      if ("kind" in minted) {
        outcome = minted;
      } else {
        const wsUrl = `${api.url.replace(/^http/, "ws")}/api/v1/sessions/${options.sessionId}/terminal`;
        outcome = await new Promise<Outcome>((resolve) => {
          const ws = new WebSocket(wsUrl, [...minted.protocols, `berth.reconnect.${attempt}`], {
            origin: new URL(api.url).origin,
          });
          socket = ws;
          let detached = false;
          detach = () => {
            detached = true;
            ws.close(1000, "detached");
          };
          ws.on("open", () => {
            ws.send(Buffer.from(JSON.stringify(size())));
            opened = true;
            if (pending.length) ws.send(encodeInput(Buffer.concat(pending)));
            pending = [];
            pendingBytes = 0;
          });
          ws.on("message", (data: Buffer) => {
            // Only what the box sends proves the terminal works: the relay completes the handshake before
            // it refuses (box unreachable, rate limited), so counting from an open socket would retry
            // every 0.4 s forever instead of backing off and giving up.
            failures = 0;
            if (data[0] === ServerCommand.OUTPUT) stdout.write(data.subarray(1));
          });
          ws.on("error", () => {}); // the close event follows and decides
          ws.on("close", (code, reason) => {
            socket = null;
            opened = false;
            detach = null;
            if (detached) resolve({ kind: "detached" });
            else if (code === Close.ENDED) resolve({ kind: "ended" });
            else resolve({ kind: "closed", code, reason: reason.toString() });
          });
        });
      }
      attempt++;
      if (outcome.kind === "detached") {
        note(`detached from '${options.sessionName}'; it keeps running. 'berth attach' to return`);
        return Exit.OK;
      }
      if (outcome.kind === "ended") {
        note(`session '${options.sessionName}' ended`);
        return Exit.OK;
      }
      if (outcome.code === Close.SESSION_GONE)
        throw new ClientError(Exit.NOT_FOUND, "the session is closed or gone");
      if (outcome.code === Close.ASLEEP) {
        if (raw) stdin.setRawMode(false);
        stdin.off("data", onInput);
        const woke = await options.onAsleep();
        stdin.on("data", onInput);
        // A wake prompt reads this stdin through readline, which pauses it when it closes: a data listener
        // alone does not restart a paused stream, and every key typed after the wake would be lost.
        stdin.resume();
        if (raw) stdin.setRawMode(true);
        if (!woke) throw new ClientError(Exit.CONFLICT, "the workspace is asleep; 'berth ws wake' it first");
        continue;
      }
      if (outcome.code === Close.UNAUTHORIZED) {
        // A token is single-use and short-lived: a fresh one, at once, once; then like any other drop.
        if (failures++ === 0) continue;
      }
      if (++failures > maxAttempts) {
        throw new ClientError(Exit.UNREACHABLE, `gave up reconnecting (${outcome.code} ${outcome.reason})`);
      }
      const delay = Math.min(10_000, 200 * 2 ** Math.min(failures, 6));
      note(
        `connection lost (${[outcome.code || "", outcome.reason].filter(Boolean).join(" ")}); reconnecting in ${(delay / 1000).toFixed(1)}s — Ctrl-] d to quit`,
      );
      const quit = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), delay);
        detach = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
      detach = null;
      if (quit) {
        note("detached");
        return Exit.OK;
      }
    }
  } finally {
    stdin.off("data", onInput);
    stdout.off("resize", onResize);
    process.off("SIGTERM", onSignal);
    process.off("SIGHUP", onSignal);
    if (raw) stdin.setRawMode(false);
    stdin.pause();
  }
}
