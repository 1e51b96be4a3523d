/**
 * `GET /api/v1/sessions/:id/terminal` as a WebSocket: decides whether a browser may have a terminal, and
 * only then opens one connection to the box and hands both to a TerminalRelay.
 *
 * The browser offers `tty` plus its token as a subprotocol entry, `berth.token.<jwt>` (never in the URL, so
 * never in an access log), and optionally `berth.reconnect.<n>`; the handshake answers with `tty` only.
 * Checks, in order, all before any upstream connection:
 *   1. the Origin is one of the configured web origins — else HTTP 403 on the upgrade;
 *   2. `tty` is offered — else HTTP 400 (not a ttyd client at all).
 *   From here a refusal completes the handshake and closes with a code and reason the browser can read
 *   (close-codes.ts), because a refused upgrade reaches a page's script only as a bare 1006:
 *   3. the token verifies (signature, audience, expiry) and names the session in the path — else 4401;
 *   4. the token is spent, atomically, in Postgres (issued by us, unexpired, unused, same user and
 *      session) — else 4401;
 *   5. the user's socket-creation rate limit — else 4429;
 *   6. the session is open and its user may open it (asked of the authorization layer) — else 4404;
 *   7. the session name matches ^[a-z0-9-]{1,32}$ (again: it becomes tmux's `-s`) — else 1011;
 *   8. the per-session socket cap, counted across replicas (store/terminal-sockets.ts) — else 4409;
 *   9. the workspace is ready with an open instance that has a terminal address — else 4503 — and the
 *      address passes the address policy (no loopback outside local mode, no metadata ranges) — else 4502;
 *  10. the workspace's ttyd credential can be opened — else 1011.
 * The client's query string is never read.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Registry } from "prom-client";
import { WebSocket, WebSocketServer } from "ws";
import { SESSION_NAME_RE } from "../../../box/protocol.ts";
import type { AddressPolicy } from "../../boxnet/address-policy.ts";
import { forWebSocket, type UpstreamResolver } from "../../boxnet/path-resolver.ts";
import { NotFound, RateLimited } from "../../platform/errors.ts";
import type { Logger } from "../../platform/logger.ts";
import type { SecretBox } from "../../platform/secret-box.ts";
import { rejectUpgrade, type UpgradeDispatcher } from "../../platform/upgrade-dispatcher.ts";
import { SYSTEM } from "../../store/actors.ts";
import type { Limiter } from "../../store/rate-limit.ts";
import type { SessionRow } from "../../store/rows.ts";
import type { AuthorizedStore, Store } from "../../store/store.ts";
import type { SocketSlots } from "../../store/terminal-sockets.ts";
import type { BoxTerminalAddress } from "../../store/workspaces.ts";
import { boxTerminalUrl } from "./box-endpoint.ts";
import { type CloseSpec, close } from "./close-codes.ts";
import { createTerminalMetrics, type TerminalMetrics } from "./metrics.ts";
import { CLIENT_MAX_PAYLOAD, type ConnectUpstream, type RelaySettings, TerminalRelay } from "./relay.ts";
import { detachAddedListeners, snapshotListeners } from "./socket-takeover.ts";
import { TerminalTokens, type TokenRefusal } from "./tokens.ts";

export const TERMINAL_PATH = /^\/api\/v1\/sessions\/([^/]+)\/terminal$/;
export const TOKEN_PROTOCOL_PREFIX = "berth.token.";
export const RECONNECT_PROTOCOL_PREFIX = "berth.reconnect.";

export interface TerminalGatewayOptions extends RelaySettings {
  /** Open terminals per session in this process. */
  maxSocketsPerSession: number;
  /** Terminal sockets a user may open per window (Postgres-backed, shared by replicas). */
  socketRateLimit: { points: number; durationSeconds: number };
  /** Token mints a user may make per window. */
  mintRateLimit: { points: number; durationSeconds: number };
  tokenTtlSeconds: number;
  /** A socket with no activity this long is closed (4408). */
  idleTimeoutMs: number;
  /**
   * Client input is always activity. Output is activity only at this rate or more: tmux redraws its status
   * line (a clock) every minute, which would otherwise keep every attached terminal busy forever, while a
   * working Claude, a build or a `top` easily passes it.
   */
  outputActivityBytesPerSecond: number;
  /** How often activity is written to `sessions`/`workspaces.last_activity_at` (batched). */
  activityFlushMs: number;
  /** The one timer for every socket: idle checks, pings, activity. */
  sweepIntervalMs: number;
  /** Opens the upstream WebSocket (tests wrap it to count connections). */
  connectUpstream: ConnectUpstream;
}

export const defaultConnectUpstream: ConnectUpstream = (url, options) =>
  new WebSocket(url, options.protocols, options);

export const DEFAULT_TERMINAL_OPTIONS: TerminalGatewayOptions = {
  // Small, as nginx's one buffer per connection: a megabyte queued here kept ttyd reading its pty at full
  // speed while the browser fell behind, so tmux drew every intermediate screen instead of skipping to
  // the current one, and a Ctrl-C showed only after the queue drained (README, Terminal relay).
  highWaterMark: 64 * 1024,
  lowWaterMark: 16 * 1024,
  initTimeoutMs: 10_000,
  maxEarlyBytes: 256 * 1024,
  upstreamHandshakeTimeoutMs: 10_000,
  upstreamMaxPayload: 8 * 1024 * 1024,
  pingIntervalMs: 10_000,
  deadPeerMs: 45_000,
  maxSocketsPerSession: 8,
  socketRateLimit: { points: 30, durationSeconds: 60 },
  mintRateLimit: { points: 60, durationSeconds: 60 },
  tokenTtlSeconds: 60,
  idleTimeoutMs: 30 * 60_000,
  outputActivityBytesPerSecond: 1024,
  activityFlushMs: 30_000,
  sweepIntervalMs: 1_000,
  connectUpstream: defaultConnectUpstream,
};

export interface OfferedProtocols {
  tty: boolean;
  /** The value after `berth.token.`; undefined if absent, null if offered more than once. */
  token: string | undefined | null;
  reconnect: number | null;
}

/** Reads the Sec-WebSocket-Protocol list. Unknown entries are ignored; `ws` rejects malformed ones. */
export function parseOfferedProtocols(header: string | undefined): OfferedProtocols {
  const out: OfferedProtocols = { tty: false, token: undefined, reconnect: null };
  for (const raw of (header ?? "").split(",")) {
    const p = raw.trim();
    if (p === "tty") out.tty = true;
    else if (p.startsWith(TOKEN_PROTOCOL_PREFIX))
      out.token = out.token === undefined ? p.slice(TOKEN_PROTOCOL_PREFIX.length) : null;
    else if (p.startsWith(RECONNECT_PROTOCOL_PREFIX)) {
      const n = p.slice(RECONNECT_PROTOCOL_PREFIX.length);
      if (/^\d{1,9}$/.test(n)) out.reconnect = Number(n);
    }
  }
  return out;
}

function normalizeOrigin(value: string): string | null {
  try {
    const origin = new URL(value).origin;
    return origin === "null" ? null : origin;
  } catch {
    return null;
  }
}

const TOKEN_REASONS: Record<TokenRefusal, string> = {
  missing: "token missing",
  malformed: "token malformed",
  invalid: "token invalid",
  expired: "token expired",
  used: "token already used",
  wrong_session: "token is for another session",
};

type Verdict =
  | {
      ok: true;
      userId: string;
      workspaceId: string;
      sessionId: string;
      jti: string;
      readOnly: boolean;
      /** The window title the client shows: our names for the workspace and the session, never the box's. */
      title: string;
      upstreamUrl: string;
      box: BoxTerminalAddress;
      credential: string;
      release: () => void;
    }
  | { ok: false; spec: CloseSpec; label: string };

export interface TerminalGatewayDeps {
  /** Admission reads as the token's user; the relay's own bookkeeping acts as `system:gateway`. */
  store: Store;
  /** Derives the token signing key. */
  secretBox: SecretBox;
  log: Logger;
  registry: Registry;
  /** The origins allowed to open sockets; read per request (the public URL is known only after listen). */
  allowedOrigins: () => string[];
  /** Which box addresses may be dialled (address-policy.ts); loopback only with the local driver. */
  allowAddress: AddressPolicy;
  /** Dials the box in the configured path order (BERTH_BOX_PATHS), remembered per instance. */
  upstream: UpstreamResolver;
  options?: Partial<TerminalGatewayOptions>;
}

export class TerminalGateway {
  readonly tokens: TerminalTokens;
  readonly metrics: TerminalMetrics;
  readonly options: TerminalGatewayOptions;
  /** Token mints per user (the route uses it). */
  readonly mintLimiter: Limiter;
  readonly #socketLimiter: Limiter;
  readonly #store: Store;
  /** The store as `system:gateway`: terminal activity and why a terminal ended. */
  readonly #bookkeeping: AuthorizedStore;
  readonly #log: Logger;
  readonly #allowedOrigins: () => string[];
  readonly #allowAddress: AddressPolicy;
  readonly #upstream: UpstreamResolver;
  readonly #wss: WebSocketServer;
  readonly #relays = new Set<TerminalRelay>();
  readonly #slots: SocketSlots;
  #lastSlotRefresh = Date.now();
  /** Activity of relays that ended since the last flush: session id → workspace id and time. */
  readonly #endedActivity = new Map<string, { workspaceId: string; at: number }>();
  #sweep: NodeJS.Timeout | null = null;
  #lastFlush = Date.now();
  #flushing: Promise<void> | null = null;
  #closed = false;

  constructor(deps: TerminalGatewayDeps) {
    this.options = { ...DEFAULT_TERMINAL_OPTIONS, ...deps.options };
    const o = this.options;
    if (!(o.lowWaterMark < o.highWaterMark)) throw new RangeError("lowWaterMark must be below highWaterMark");
    this.#store = deps.store;
    this.#bookkeeping = deps.store.as(SYSTEM.gateway);
    this.#log = deps.log.child({ component: "terminal" });
    this.#allowedOrigins = deps.allowedOrigins;
    this.#allowAddress = deps.allowAddress;
    this.#upstream = deps.upstream;
    this.metrics = createTerminalMetrics(deps.registry);
    this.tokens = new TerminalTokens({
      verifier: deps.store.as(SYSTEM.auth).terminalTokens,
      key: deps.secretBox.deriveKey("terminal-token"),
      ttlSeconds: o.tokenTtlSeconds,
    });
    this.mintLimiter = deps.store.rateLimiter({ name: "terminal-token", ...o.mintRateLimit });
    this.#socketLimiter = deps.store.rateLimiter({ name: "terminal-socket", ...o.socketRateLimit });
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: CLIENT_MAX_PAYLOAD,
      // The answer names `tty` only: the token entry is never echoed back.
      handleProtocols: (protocols) => (protocols.has("tty") ? "tty" : false),
    });
    this.#slots = deps.store.socketSlots({
      // Three missed refreshes: a replica that died stops holding its sessions' slots within minutes.
      staleAfterMs: 3 * o.activityFlushMs + 5_000,
      onError: (err, what) => this.#log.warn({ err, what }, "terminal socket registry"),
    });
    this.#sweep = setInterval(() => this.#tick(), o.sweepIntervalMs);
    this.#sweep.unref();
  }

  /** Sockets relayed by this process right now. */
  get socketCount(): number {
    return this.#relays.size;
  }

  /** The relays open right now (tests and benchmarks read their buffers). */
  get relays(): ReadonlySet<TerminalRelay> {
    return this.#relays;
  }

  register(upgrades: UpgradeDispatcher): void {
    upgrades.register(
      (url) => TERMINAL_PATH.test(url.pathname),
      (req, socket, head, url) => this.handleUpgrade(req, socket, head, url),
    );
  }

  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): Promise<void> {
    const pathSessionId = TERMINAL_PATH.exec(url.pathname)?.[1] ?? "";
    if (this.#closed) return this.#httpRefuse(socket, 503, "Service Unavailable", "shutting_down");
    if (req.method !== "GET") return this.#httpRefuse(socket, 405, "Method Not Allowed", "method");
    const origin = normalizeOrigin(req.headers.origin ?? "");
    const allowed = this.#allowedOrigins()
      .map(normalizeOrigin)
      .filter((o): o is string => o !== null);
    if (!origin || !allowed.includes(origin)) return this.#httpRefuse(socket, 403, "Forbidden", "origin");
    const offered = parseOfferedProtocols(req.headers["sec-websocket-protocol"]);
    if (!offered.tty) return this.#httpRefuse(socket, 400, "Bad Request", "no_tty_protocol");

    let verdict: Verdict;
    try {
      verdict = await this.#authorize(pathSessionId, offered.token);
    } catch (err) {
      this.#log.error({ err }, "terminal authorization failed");
      verdict = { ok: false, spec: close.terminalError, label: "internal" };
    }
    if (!verdict.ok) return this.#closeRefuse(req, socket, head, verdict.spec, verdict.label);
    if (this.#closed || socket.destroyed) {
      verdict.release();
      // Shut down while it was being authorized: answered and closed, or the HTTP server's close (which
      // does not reach upgrade requests) would wait for this client to give up.
      if (!socket.destroyed) this.#httpRefuse(socket, 503, "Service Unavailable", "shutting_down");
      return;
    }

    let accepted = false;
    // `ws` does the handshake only; the relay takes the socket from it (socket-takeover.ts).
    const before = snapshotListeners(socket);
    this.#wss.handleUpgrade(req, socket, head, () => {
      accepted = true;
      detachAddedListeners(socket, before);
      this.#startRelay(socket, verdict, offered.reconnect);
    });
    // ws refused the handshake itself (bad key or version) or the socket died: give the slot back.
    if (!accepted) verdict.release();
  }

  async #authorize(pathSessionId: string, token: string | undefined | null): Promise<Verdict> {
    const refuse = (spec: CloseSpec, label: string): Verdict => ({ ok: false, spec, label });
    const unauthorized = (why: TokenRefusal) =>
      refuse(close.unauthorized(TOKEN_REASONS[why]), `token_${why}`);

    if (token === null) return unauthorized("malformed"); // offered twice
    const checked = await this.tokens.verify(token);
    if (!checked.ok) return unauthorized(checked.refusal);
    const claims = checked.claims;
    if (claims.sessionId !== pathSessionId) return unauthorized("wrong_session");
    if (!(await this.tokens.consume(claims))) return unauthorized("used");

    try {
      await this.#socketLimiter(claims.userId);
    } catch (err) {
      if (err instanceof RateLimited) return refuse(close.rateLimited(err.retryAfterSeconds), "rate_limited");
      throw err;
    }

    const actor = await this.#store.as(SYSTEM.auth).users.find(claims.userId);
    if (!actor) return refuse(close.sessionGone, "session_gone");
    // From here on, everything is read as the token's user: their session, their box, its credential.
    const scope = this.#store.as(actor);
    let session: SessionRow;
    try {
      ({ session } = await scope.sessions.get(claims.sessionId));
    } catch (err) {
      if (err instanceof NotFound) return refuse(close.sessionGone, "session_gone");
      throw err;
    }
    if (session.workspaceId !== claims.workspaceId) return unauthorized("wrong_session");
    if (!SESSION_NAME_RE.test(session.name)) {
      this.#log.error({ sessionId: session.id }, "refusing a terminal for a session whose name is not valid");
      return refuse({ code: 1011, reason: "invalid session name" }, "invalid_session_name");
    }

    // Counted across replicas (store/terminal-sockets.ts), atomically: concurrent upgrades cannot both take
    // the last one.
    const max = this.options.maxSocketsPerSession;
    const slot = await this.#slots.reserve(session.id, max);
    if (!slot) return refuse(close.tooManySockets(max), "too_many_sockets");
    const release = slot.release;
    try {
      const box = await scope.workspaces.terminalEndpoint(session.workspaceId);
      if (!box.ok) {
        release();
        return refuse(close.boxAsleep(box.state), "box_asleep");
      }
      const { publicIp, tailnetIp } = box.address;
      const dialable =
        (publicIp !== null && this.#allowAddress("public", publicIp)) ||
        (tailnetIp !== null && this.#allowAddress("tailnet", tailnetIp));
      if (!dialable) {
        release();
        this.#log.warn({ workspaceId: session.workspaceId }, "box address refused by the address policy");
        return refuse(close.boxUnreachable, "address_refused");
      }
      const workspace = await scope.workspaces.get(session.workspaceId);
      const credential = await scope.secrets.terminalCredential(session.workspaceId);
      if (!credential) {
        release();
        this.#log.error({ workspaceId: session.workspaceId }, "workspace has no ttyd credential");
        return refuse(close.terminalError, "no_credential");
      }
      return {
        ok: true,
        userId: claims.userId,
        workspaceId: session.workspaceId,
        sessionId: session.id,
        jti: claims.jti,
        readOnly: claims.readOnly,
        title: `${session.name} · ${workspace.name}`,
        upstreamUrl: boxTerminalUrl(box.address, session.name),
        box: box.address,
        credential,
        release,
      };
    } catch (err) {
      release();
      throw err;
    }
  }

  #startRelay(socket: Duplex, v: Extract<Verdict, { ok: true }>, reconnect: number | null): void {
    const relay = new TerminalRelay({
      socket,
      identity: {
        userId: v.userId,
        workspaceId: v.workspaceId,
        sessionId: v.sessionId,
        jti: v.jti,
        reconnect,
        readOnly: v.readOnly,
        title: v.title,
      },
      upstreamUrl: v.upstreamUrl,
      credential: v.credential,
      settings: this.options,
      metrics: this.metrics,
      log: this.#log.child({ sessionId: v.sessionId }),
      hooks: {
        // The URL names the box for the Host header only; the resolver picks the path and dials.
        connectUpstream: (url, options) =>
          this.options.connectUpstream(url, {
            ...options,
            createConnection: forWebSocket(
              this.#upstream.createConnection(
                {
                  id: v.box.instanceId,
                  publicIp: v.box.publicIp,
                  tailnetIp: v.box.tailnetIp,
                  probePort: v.box.port,
                },
                v.box.port,
                { onread: options.onread },
              ),
            ),
          }),
        explainUpstreamEnd: (r) => this.#explain(r.identity.sessionId),
        onEnd: (r, sent, endedBy) => {
          v.release();
          this.#relays.delete(r);
          this.#reportBytes(r);
          this.metrics.sockets.dec();
          this.metrics.duration.observe((performance.now() - r.openedAt) / 1000);
          this.metrics.closes.inc({
            code: endedBy === "client" ? "client" : String(sent?.code ?? "unknown"),
          });
          if (r.lastActivityAt > r.recordedActivityAt) this.#noteEnded(r);
          this.#log.info(
            {
              sessionId: r.identity.sessionId,
              endedBy,
              code: sent?.code,
              reason: sent?.reason,
              seconds: Math.round((performance.now() - r.openedAt) / 1000),
              bytesUp: r.bytesUp,
              bytesDown: r.bytesDown,
            },
            "terminal socket closed",
          );
        },
      },
    });
    this.#relays.add(relay);
    this.metrics.sockets.inc();
    this.metrics.connections.inc();
    this.#log.info(
      {
        sessionId: v.sessionId,
        workspaceId: v.workspaceId,
        userId: v.userId,
        jti: v.jti,
        reconnect,
        readOnly: v.readOnly,
      },
      "terminal socket opened",
    );
    relay.start();
  }

  /** Why the upstream went away, when the database knows better than the close code. */
  async #explain(sessionId: string): Promise<CloseSpec | null> {
    const query = this.#bookkeeping.sessions.liveness(sessionId);
    const timeout = new Promise<"timeout">((resolve) => setTimeout(resolve, 2_000, "timeout").unref());
    const row = await Promise.race([query, timeout]);
    if (row === "timeout") return null;
    if (!row || row.closed) return close.sessionGone;
    if (row.state !== "ready" || !row.running) return close.boxAsleep(row.state);
    return null;
  }

  #httpRefuse(socket: Duplex, status: number, text: string, label: string): void {
    this.metrics.refusals.inc({ reason: label });
    this.#log.info({ reason: label, status }, "terminal upgrade refused");
    rejectUpgrade(socket, status, text);
  }

  /** Completes the handshake only to close with a code and reason the browser's script can read. */
  #closeRefuse(req: IncomingMessage, socket: Duplex, head: Buffer, spec: CloseSpec, label: string): void {
    this.metrics.refusals.inc({ reason: label });
    this.#log.info({ reason: label, code: spec.code }, "terminal socket refused");
    if (socket.destroyed) return;
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on("error", () => {});
      ws.close(spec.code, spec.reason);
      // A client that never answers the close frame is cut off quickly: it has no business here.
      setTimeout(() => ws.terminate(), 2_000).unref();
    });
  }

  // ---- the sweep: idle, pings, activity, byte counters --------------------------------------------

  #tick(): void {
    const now = Date.now();
    const o = this.options;
    const outputThreshold = (o.outputActivityBytesPerSecond * o.sweepIntervalMs) / 1000;
    for (const relay of this.#relays) {
      if (relay.outputSinceSweep >= outputThreshold) relay.lastActivityAt = now;
      relay.outputSinceSweep = 0;
      if (now - relay.lastActivityAt >= o.idleTimeoutMs) {
        relay.end(close.idleTimeout);
        continue;
      }
      relay.tick(now);
      this.#reportBytes(relay);
    }
    if (now - this.#lastFlush >= o.activityFlushMs) void this.flushActivity();
    if (now - this.#lastSlotRefresh >= o.activityFlushMs) {
      this.#lastSlotRefresh = now;
      void this.#slots.refresh();
    }
  }

  #reportBytes(relay: TerminalRelay): void {
    if (relay.bytesUp !== relay.reportedUp) {
      this.metrics.bytes.inc({ direction: "up" }, relay.bytesUp - relay.reportedUp);
      relay.reportedUp = relay.bytesUp;
    }
    if (relay.bytesDown !== relay.reportedDown) {
      this.metrics.bytes.inc({ direction: "down" }, relay.bytesDown - relay.reportedDown);
      relay.reportedDown = relay.bytesDown;
    }
  }

  #noteEnded(relay: TerminalRelay): void {
    const prev = this.#endedActivity.get(relay.identity.sessionId);
    if (!prev || prev.at < relay.lastActivityAt)
      this.#endedActivity.set(relay.identity.sessionId, {
        workspaceId: relay.identity.workspaceId,
        at: relay.lastActivityAt,
      });
    relay.recordedActivityAt = relay.lastActivityAt;
  }

  /**
   * Writes activity since the last flush to `sessions.last_activity_at` and `workspaces.last_activity_at`
   * in one statement (never moving either backwards), for autostop to read. Runs every `activityFlushMs`
   * and at shutdown.
   */
  flushActivity(): Promise<void> {
    if (this.#flushing) return this.#flushing;
    this.#lastFlush = Date.now();
    const latest = new Map(this.#endedActivity);
    this.#endedActivity.clear();
    for (const relay of this.#relays) {
      if (relay.lastActivityAt <= relay.recordedActivityAt) continue;
      const prev = latest.get(relay.identity.sessionId);
      if (!prev || prev.at < relay.lastActivityAt)
        latest.set(relay.identity.sessionId, {
          workspaceId: relay.identity.workspaceId,
          at: relay.lastActivityAt,
        });
      relay.recordedActivityAt = relay.lastActivityAt;
    }
    if (latest.size === 0) return Promise.resolve();
    const activity = [...latest].map(([sessionId, v]) => ({
      sessionId,
      workspaceId: v.workspaceId,
      at: new Date(v.at),
    }));
    this.#flushing = this.#bookkeeping.sessions
      .recordActivity(activity)
      .then(
        () => undefined,
        (err: unknown) => {
          this.#log.warn({ err }, "recording terminal activity failed; will retry");
          for (const [id, v] of latest) {
            const cur = this.#endedActivity.get(id);
            if (!cur || cur.at < v.at) this.#endedActivity.set(id, v);
          }
        },
      )
      .finally(() => {
        this.#flushing = null;
      });
    return this.#flushing;
  }

  /** Closes every socket with 1001 (clients reconnect to another replica), then records their activity. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweep) clearInterval(this.#sweep);
    for (const relay of this.#relays) relay.end(close.goingAway);
    const deadline = Date.now() + 2_000;
    while (this.#relays.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const relay of this.#relays) relay.client.terminate();
    await this.#flushing;
    await this.flushActivity();
    await this.#slots.drain();
  }
}
