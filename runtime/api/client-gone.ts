import type { IncomingMessage } from "node:http";

/**
 * Calls `cb` once the client that sent `req` has gone, at once if it already has. A streaming route awaits
 * (authentication, a lookup, a LISTEN) before it can listen for `close`, and a client that left meanwhile
 * fired it already: whatever the route then set up for that client would be held forever.
 */
export function whenClientGone(req: IncomingMessage, cb: () => void): void {
  if (req.destroyed) cb();
  else req.once("close", cb);
}
