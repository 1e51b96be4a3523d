/**
 * The one way the control plane reaches a box, for the terminal relay, the preview proxy and the health
 * checks: the primary path first (the public IP unless BERTH_BOX_PATHS says otherwise), the fallback second,
 * each with a short TCP connect timeout.
 *
 * Per instance it remembers the path that worked. A remembered primary changes nothing. A remembered
 * fallback is dialled first, so traffic does not pay a connect timeout on a dead primary every time, and while on it a background timer re-probes the primary every `reprobeMs`: when the
 * primary answers, traffic returns to it; while it does not, the fallback stays confirmed. A remembered
 * path that nobody used for `ttlMs` is forgotten (and its re-probing stops), so the next use starts from the
 * primary again. `reprobeMs` is below `ttlMs`, so a box returns to its primary within the TTL.
 *
 * Addresses stay here: failures are a `BoxUnreachableError` whose message is "box unreachable" and whose
 * details name paths and error kinds, never an address or a port. Callers get an address only from
 * `connectTarget()`, for their own dialling; it must not reach a client either.
 *
 * Which call to use: `createConnection()` for `http.request` and `ws` (the resolver dials, they speak the
 * protocol); `connect()` for a raw socket; `connectTarget()` when a library insists on a URL.
 */
import type { ClientRequestArgs } from "node:http";
import { connect as netConnect, type OnReadOpts, type Socket } from "node:net";
import type { Logger } from "../platform/logger.ts";
import type { Metrics } from "../platform/metrics.ts";
import type { AddressPolicy, UpstreamPath } from "./address-policy.ts";

export type { UpstreamPath } from "./address-policy.ts";
export type ConnectResult = "ok" | "timeout" | "refused" | "unreachable" | "error";

/** What the resolver needs of a `workspace_instances` row (the drizzle row type fits as is). */
export interface BoxAddresses {
  /** The instance id: the remembered path belongs to one VM life, not to the workspace. */
  id: string;
  publicIp: string | null;
  tailnetIp: string | null;
  /**
   * A port the box always serves (its terminal endpoint), used to re-probe the primary path. Without it the
   * re-probe uses the last port that worked, which may be a preview whose dev server has since stopped.
   */
  probePort?: number | null;
}

export interface UpstreamTarget {
  host: string;
  port: number;
  path: UpstreamPath;
  /** `host:port`, bracketed for IPv6: ready for a URL or a Host header towards the box. */
  authority: string;
}

export interface UpstreamConnection {
  /** Connected, with TCP keepalive on. The caller owns it, its `error` events included. */
  socket: Socket;
  path: UpstreamPath;
}

export interface DialOptions {
  /** Aborts the dial (the client went away); rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * net's `onread` for the socket dialled (the terminal and preview relays read the box into reused buffers:
   * runtime/boxnet/upstream-reads.ts). Must be set when the socket is created.
   */
  onread?: OnReadOpts;
}

/** The async (callback) form of `createConnection` that `http.request` and `ws` accept. */
export type UpstreamCreateConnection = NonNullable<ClientRequestArgs["createConnection"]>;

export class BoxUnreachableError extends Error {
  override name = "BoxUnreachableError";
  readonly code = "box_unreachable";
  /** Why each path failed, in the order tried; empty when the box has no usable address. */
  readonly attempts: ReadonlyArray<{ path: UpstreamPath; result: ConnectResult }>;
  constructor(attempts: ReadonlyArray<{ path: UpstreamPath; result: ConnectResult }>) {
    super("box unreachable");
    this.attempts = attempts;
  }
}

export interface UpstreamOptions {
  metrics: Metrics;
  log: Logger;
  /** Which addresses may be dialled at all (address-policy.ts). */
  allowAddress: AddressPolicy;
  /** Per path: a box behind a dropping firewall costs this much before the fallback is tried. */
  connectTimeoutMs?: number;
  /** How long a remembered path outlives its last use. */
  ttlMs?: number;
  /** How often the primary is re-probed while a box is on the fallback; must be below `ttlMs`. */
  reprobeMs?: number;
  /**
   * Which paths to use, primary first (BERTH_BOX_PATHS). Default public then tailnet. Putting the tailnet
   * first keeps terminal and preview traffic inside WireGuard when the control plane is on the tailnet;
   * a single path never falls back.
   */
  pathOrder?: readonly UpstreamPath[];
}

export const DEFAULT_PATH_ORDER: readonly UpstreamPath[] = ["public", "tailnet"];

interface Remembered {
  path: UpstreamPath;
  /** The addresses it was learned for: a changed address (IP drift, new tailnet IP) starts over. */
  publicIp: string | null;
  tailnetIp: string | null;
  /** The port the re-probe dials: the box's probe port, else the last one that worked. */
  port: number;
  lastUsedAt: number;
  reprobe: NodeJS.Timeout | null;
  reprobing: boolean;
}

class ConnectFailure extends Error {
  readonly result: ConnectResult;
  constructor(result: ConnectResult) {
    super(result);
    this.result = result;
  }
}

function classify(err: unknown): ConnectResult {
  if (err instanceof ConnectFailure) return err.result;
  switch ((err as NodeJS.ErrnoException).code) {
    case "ECONNREFUSED":
      return "refused";
    case "ETIMEDOUT":
      return "timeout";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "EHOSTDOWN":
    case "ENETDOWN":
      return "unreachable";
    default:
      return "error";
  }
}

/** One TCP connect with a deadline. Errors carry no address (`ConnectFailure` or the errno code only). */
function dial(
  host: string,
  port: number,
  timeoutMs: number,
  signal?: AbortSignal,
  onread?: OnReadOpts,
): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = netConnect({ host, port, noDelay: true, ...(onread ? { onread } : {}) });
    const finish = (err: Error | null) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.removeListener("connect", onConnect);
      socket.removeListener("error", onError);
      if (err) {
        socket.destroy();
        reject(err);
      } else {
        socket.setKeepAlive(true, 30_000);
        resolve(socket);
      }
    };
    const onConnect = () => finish(null);
    const onError = (err: NodeJS.ErrnoException) => finish(new ConnectFailure(classify(err)));
    const onAbort = () => finish(signal?.reason instanceof Error ? signal.reason : new Error("aborted"));
    const timer = setTimeout(() => finish(new ConnectFailure("timeout")), timeoutMs);
    socket.once("connect", onConnect);
    socket.once("error", onError);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export function formatAuthority(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

export class UpstreamResolver {
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #allow: AddressPolicy;
  readonly #timeoutMs: number;
  readonly #ttlMs: number;
  readonly #reprobeMs: number;
  readonly #pathOrder: readonly UpstreamPath[];
  readonly #memory = new Map<string, Remembered>();
  /** Instances whose refused address was logged already: once per instance, not once per connection. */
  readonly #refusedLogged = new Set<string>();
  #closed = false;

  constructor(options: UpstreamOptions) {
    this.#metrics = options.metrics;
    this.#log = options.log;
    this.#allow = options.allowAddress;
    this.#timeoutMs = options.connectTimeoutMs ?? 1_500;
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.#reprobeMs = options.reprobeMs ?? 10_000;
    this.#pathOrder = options.pathOrder ?? DEFAULT_PATH_ORDER;
    if (this.#pathOrder.length === 0 || new Set(this.#pathOrder).size !== this.#pathOrder.length)
      throw new RangeError("pathOrder must name each path at most once, and at least one");
    if (!(this.#reprobeMs < this.#ttlMs)) throw new RangeError("reprobeMs must be below ttlMs");
  }

  /**
   * A connected socket to `port` on the box, through the remembered path or the path order. Rejects with
   * `BoxUnreachableError` when every path failed, or with the signal's reason when aborted.
   */
  async connect(box: BoxAddresses, port: number, options: DialOptions = {}): Promise<UpstreamConnection> {
    const attempts: Array<{ path: UpstreamPath; result: ConnectResult }> = [];
    for (const { path, host } of this.#order(box)) {
      options.signal?.throwIfAborted();
      const started = performance.now();
      try {
        const socket = await dial(host, port, this.#timeoutMs, options.signal, options.onread);
        this.#metrics.upstreamConnections.inc({ path, result: "ok" });
        this.#metrics.upstreamConnectSeconds.observe({ path }, (performance.now() - started) / 1000);
        this.#remember(box, path, port);
        return { socket, path };
      } catch (err) {
        if (options.signal?.aborted) throw err;
        const result = classify(err);
        this.#metrics.upstreamConnections.inc({ path, result });
        attempts.push({ path, result });
      }
    }
    // The memory stays: a failure on every path is as often a closed port (a preview whose dev server is
    // down) as a dead box, and forgetting would send the next terminal attach back to a dead primary.
    this.#metrics.upstreamUnreachable.inc();
    this.#log.warn({ instanceId: box.id, attempts }, "box unreachable");
    throw new BoxUnreachableError(attempts);
  }

  /**
   * The address to dial, for a caller that opens the connection itself (e.g. `TtydClient.connect` with a
   * URL). The box is dialled once (and that connection closed) so the answer is true now, not merely
   * remembered: one extra TCP handshake, fine for a terminal attach. Per-request traffic (preview HTTP)
   * should use `createConnection` or `connect` instead, which dial once. If dialling the result fails
   * anyway, call `reportFailure`.
   */
  async connectTarget(box: BoxAddresses, port: number, options: DialOptions = {}): Promise<UpstreamTarget> {
    const { socket, path } = await this.connect(box, port, options);
    socket.destroy();
    const host = hostOf(box, path) as string;
    return { host, port, path, authority: formatAuthority(host, port) };
  }

  /** A caller's own dial of a `connectTarget()` result failed: forget the path it used. */
  reportFailure(box: BoxAddresses, path: UpstreamPath, err?: unknown): void {
    this.#metrics.upstreamConnections.inc({ path, result: err === undefined ? "error" : classify(err) });
    if (this.#memory.get(box.id)?.path === path) this.#forget(box.id);
  }

  /**
   * For `http.request({ createConnection })` and `new WebSocket(url, { createConnection })`: both call it
   * with a callback and wait for it. The URL's host then only names the Host header. `onPath` learns which
   * path carried the connection (for logs and tests).
   */
  createConnection(
    box: BoxAddresses,
    port: number,
    options: DialOptions & { onPath?: (path: UpstreamPath) => void } = {},
  ): UpstreamCreateConnection {
    return (_args, oncreate) => {
      this.connect(box, port, options).then(
        ({ socket, path }) => {
          options.onPath?.(path);
          oncreate(null, socket);
        },
        (err: Error) => oncreate(err, undefined as never),
      );
      return undefined;
    };
  }

  /** The path remembered for an instance, or null (then the next dial starts from the primary). */
  currentPath(instanceId: string): UpstreamPath | null {
    return this.#memory.get(instanceId)?.path ?? null;
  }

  /** The instance stopped (hibernate, destroy): drop what was remembered and stop re-probing. */
  forget(instanceId: string): void {
    this.#forget(instanceId);
  }

  close(): void {
    this.#closed = true;
    for (const id of [...this.#memory.keys()]) this.#forget(id);
  }

  /** The paths to try, in order: the remembered one first, then the others in the configured order. */
  #order(box: BoxAddresses): Array<{ path: UpstreamPath; host: string }> {
    const paths: Array<{ path: UpstreamPath; host: string }> = [];
    for (const path of this.#pathOrder) {
      const host = hostOf(box, path);
      if (!host) continue;
      if (this.#allow(path, host)) paths.push({ path, host });
      else if (!this.#refusedLogged.has(`${box.id}:${path}`)) {
        this.#refusedLogged.add(`${box.id}:${path}`);
        this.#log.warn({ instanceId: box.id, path }, "box address refused by the address policy");
      }
    }
    const remembered = this.#fresh(box)?.path;
    const i = paths.findIndex((p) => p.path === remembered);
    if (i > 0) paths.unshift(...paths.splice(i, 1));
    return paths;
  }

  /** The remembered path if it still applies to these addresses and was used within the TTL. */
  #fresh(box: BoxAddresses): Remembered | null {
    const r = this.#memory.get(box.id);
    if (!r) return null;
    const same = r.publicIp === box.publicIp && r.tailnetIp === box.tailnetIp;
    if (same && Date.now() - r.lastUsedAt <= this.#ttlMs) return r;
    this.#forget(box.id);
    return null;
  }

  #remember(box: BoxAddresses, path: UpstreamPath, port: number): void {
    const now = Date.now();
    const previous = this.#fresh(box);
    const probePort = box.probePort ?? port;
    if (previous?.path === path) {
      previous.lastUsedAt = now;
      previous.port = probePort;
      return;
    }
    this.#forget(box.id);
    // Counted against the configured order: a first connection over the fallback is a switch to it.
    const primary = this.#pathOrder[0]!;
    if ((previous?.path ?? primary) !== path) {
      this.#metrics.upstreamPathSwitches.inc({ to: path });
      this.#log.info({ instanceId: box.id, path }, "box reached through another path");
    }
    const r: Remembered = {
      path,
      publicIp: box.publicIp,
      tailnetIp: box.tailnetIp,
      port: probePort,
      lastUsedAt: now,
      reprobe: null,
      reprobing: false,
    };
    this.#memory.set(box.id, r);
    const primaryHost = hostOf(box, primary);
    if (path !== primary && primaryHost && this.#allow(primary, primaryHost) && !this.#closed) {
      r.reprobe = setInterval(() => void this.#reprobe(box.id, r), this.#reprobeMs);
      r.reprobe.unref();
    }
  }

  async #reprobe(id: string, r: Remembered): Promise<void> {
    if (r.reprobing || this.#memory.get(id) !== r) return;
    if (Date.now() - r.lastUsedAt > this.#ttlMs) return this.#forget(id);
    r.reprobing = true;
    try {
      const primary = this.#pathOrder[0]!;
      const socket = await dial(hostOf(r, primary) as string, r.port, this.#timeoutMs);
      socket.destroy();
      this.#metrics.upstreamReprobes.inc({ result: "ok" });
      if (this.#memory.get(id) !== r) return;
      if (r.reprobe) clearInterval(r.reprobe);
      r.reprobe = null;
      r.path = primary;
      this.#metrics.upstreamPathSwitches.inc({ to: primary });
      this.#log.info({ instanceId: id, path: primary }, "box reachable on its primary path again");
    } catch {
      this.#metrics.upstreamReprobes.inc({ result: "fail" });
    } finally {
      r.reprobing = false;
    }
  }

  #forget(id: string): void {
    const r = this.#memory.get(id);
    if (r?.reprobe) clearInterval(r.reprobe);
    this.#memory.delete(id);
  }
}

function hostOf(
  box: { publicIp: string | null; tailnetIp: string | null },
  path: UpstreamPath,
): string | null {
  return path === "public" ? box.publicIp : box.tailnetIp;
}

/** `ws` types `createConnection` as net's synchronous one, but hands it to `http.request`, which waits. */
export function forWebSocket(create: UpstreamCreateConnection): typeof import("node:net").createConnection {
  return create as unknown as typeof import("node:net").createConnection;
}
