/**
 * An `http.Agent` whose connections are dialled by the upstream resolver, for proxies that take an agent
 * and a target rather than a socket (http-proxy-3's `ws()`, `http.request`; undici's connector calls `dial()`). A request names the
 * box by `target(box, port)`, whose host is the instance id plus a hash of its addresses: the agent pools
 * keep-alive sockets per instance, addresses and port, and each new socket goes through the resolver's path
 * order and memory. That name is also what the Host header would carry if the caller let it; proxies keep the
 * client's Host (http-proxy's default), so no address reaches the box's server or the client.
 */
import { createHash } from "node:crypto";
import { Agent, type AgentOptions, type ClientRequestArgs } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import {
  type BoxAddresses,
  BoxUnreachableError,
  type DialOptions,
  type UpstreamResolver,
} from "./path-resolver.ts";

/** Boxes not named for this long are dropped from the agent's table (their pooled sockets age out anyway). */
const FORGET_AFTER_MS = 10 * 60_000;

export class UpstreamAgent extends Agent {
  readonly #resolver: UpstreamResolver;
  readonly #boxes = new Map<string, { box: BoxAddresses; seenAt: number }>();
  /** Per instance, the pool key for its current addresses: hashed once per address change, not per request. */
  readonly #keys = new Map<string, { addresses: string; key: string }>();

  constructor(resolver: UpstreamResolver, options: AgentOptions = {}) {
    super(options);
    this.#resolver = resolver;
  }

  /** The target to hand the proxy for `port` on this box; records the box's current addresses. */
  target(box: BoxAddresses, port: number): { protocol: "http:"; host: string; port: number } {
    const now = Date.now();
    // The pool key carries the addresses too: when a box's address changes, sockets kept alive to the old
    // one must never serve the new one (the old address may now be anything, even another tenant's box).
    const addresses = `${box.publicIp}|${box.tailnetIp}`;
    let key = this.#keys.get(box.id);
    if (key?.addresses !== addresses) {
      key = {
        addresses,
        key: `${box.id}-${createHash("sha256").update(addresses).digest("hex").slice(0, 12)}`,
      };
      this.#keys.set(box.id, key);
    }
    this.#boxes.set(key.key, {
      box: { id: box.id, publicIp: box.publicIp, tailnetIp: box.tailnetIp, probePort: box.probePort ?? null },
      seenAt: now,
    });
    if (this.#boxes.size > 64) {
      for (const [id, entry] of this.#boxes) {
        if (now - entry.seenAt > FORGET_AFTER_MS) {
          this.#boxes.delete(id);
          this.#keys.delete(entry.box.id);
        }
      }
    }
    return { protocol: "http:", host: key.key, port };
  }

  /**
   * A new socket to the box a `target()` host names, through the resolver; for clients that pool their own
   * connections (undici's connector) as well as for this agent.
   */
  async dial(host: string, port: number, options: DialOptions = {}): Promise<Socket> {
    const entry = this.#boxes.get(host);
    // Not a box named through target(): never fall back to resolving the host as a name.
    if (!entry) throw new BoxUnreachableError([]);
    return (await this.#resolver.connect(entry.box, port, options)).socket;
  }

  override createConnection(
    options: ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const done = callback ?? (() => {});
    this.dial(String(options.host), Number(options.port)).then(
      (socket) => done(null, socket),
      (err: Error) => done(err, undefined as never),
    );
    return undefined;
  }
}
