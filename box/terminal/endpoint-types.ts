import type { TmuxServerOptions } from "../tmux/tmux-command.ts";

/** A running ttyd-protocol endpoint: the built-in server or a ttyd process. */
export interface TerminalEndpoint {
  kind: "builtin" | "ttyd";
  host: string;
  port: number;
  /** Base WebSocket URL without query, e.g. `ws://127.0.0.1:7681/ws`; add `?arg=<session>`. */
  wsUrl: string;
  /** Stops serving and ends every terminal process it started. Sessions in tmux keep running. */
  close(): Promise<void>;
}

/** The subset of pino's API the terminal code logs through; secrets are never passed to it. */
export interface TerminalLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export const silentLogger: TerminalLogger = { info() {}, warn() {}, error() {} };

export interface CommonEndpointOptions {
  /** Bind address; 127.0.0.1 locally, the private/tailnet address on a box. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** `user:password`. Omit only for a loopback-only development endpoint. */
  credential?: string;
  /** The dedicated tmux server the terminals attach to. */
  tmux: Pick<TmuxServerOptions, "socket" | "configFile" | "bin" | "env">;
  /** Working directory for the attach process (and so for a session it has to create). */
  cwd?: string;
  logger?: TerminalLogger;
}
