/**
 * Taking a socket back from `ws` once it has done a WebSocket handshake, so the terminal relay can forward
 * frames as wire bytes (frame-reader.ts). `ws` does the handshakes on both legs (key and version checks on
 * the browser's, the Accept and subprotocol checks, handshake timeout and redirect refusal on the box's);
 * when its WebSocket opens, it has attached its listeners to the socket but read nothing yet (it resumes
 * the socket on the next tick), so removing exactly the listeners it added hands the socket over intact,
 * any bytes that came with the handshake included (`ws` put them back with `unshift`).
 *
 * Which listeners are `ws`'s is found by difference, not by name: take a snapshot before the handshake and
 * remove what is new after it. The abandoned WebSocket object is left to the garbage collector.
 */
import type { Duplex } from "node:stream";

const EVENTS = ["data", "end", "close", "error", "drain", "timeout", "readable"] as const;

export type ListenerSnapshot = Map<string, Set<unknown>>;

export function snapshotListeners(socket: Duplex): ListenerSnapshot {
  return new Map(EVENTS.map((e) => [e, new Set<unknown>(socket.listeners(e))]));
}

/**
 * Removes every listener added to `socket` since `before`, and the back reference `ws` keeps on it
 * (a symbol described "websocket"), which would otherwise hold the abandoned WebSocket, its Receiver and
 * Sender in memory for as long as the terminal is open.
 */
export function detachAddedListeners(socket: Duplex, before: ListenerSnapshot): void {
  for (const event of EVENTS) {
    const old = before.get(event)!;
    for (const listener of socket.listeners(event)) {
      if (!old.has(listener)) socket.removeListener(event, listener as (...args: unknown[]) => void);
    }
  }
  // Overwritten, not deleted: deleting a property would turn the socket into a slow dictionary-mode
  // object, about 1.6 kB more per socket.
  const record = socket as unknown as Record<symbol, unknown>;
  for (const key of Object.getOwnPropertySymbols(socket)) {
    if (key.description === "websocket") record[key] = undefined;
  }
}
