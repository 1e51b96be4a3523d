import { type BuiltinServerOptions, startBuiltinTerminalServer } from "./builtin-server.ts";
import type { TerminalEndpoint } from "./endpoint-types.ts";
import { findTtyd, startTtyd } from "./ttyd-launcher.ts";

export type { TerminalEndpoint } from "./endpoint-types.ts";

export interface TerminalEndpointOptions extends BuiltinServerOptions {
  /**
   * `auto` (default): ttyd when a `ttyd` is on PATH, else the built-in server. `builtin`: never ttyd.
   * An absolute path: that ttyd binary, and fail if it cannot start.
   */
  ttyd?: "auto" | "builtin" | string;
  /** For ttyd's attach command: the agent's `/sessions` URL on loopback (ttyd cannot run `onAttach`). */
  ensureSessionUrl?: string;
}

/**
 * Starts the box's terminal endpoint, preferring a real ttyd. Both speak the same protocol, so the control
 * plane's relay does not care which one runs. With ttyd, `onAttach` cannot run (ttyd spawns the attach
 * itself): its attach command asks the agent instead, at `ensureSessionUrl`.
 */
export async function startTerminalEndpoint(opts: TerminalEndpointOptions): Promise<TerminalEndpoint> {
  const choice = opts.ttyd ?? "auto";
  const binary = choice === "builtin" ? null : choice === "auto" ? await findTtyd() : choice;
  if (binary) {
    try {
      return await startTtyd({ ...opts, binary });
    } catch (err) {
      if (choice !== "auto") throw err;
      opts.logger?.warn({ err: (err as Error).message }, "ttyd failed to start; using the built-in server");
    }
  }
  return startBuiltinTerminalServer(opts);
}
