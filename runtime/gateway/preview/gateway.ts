/**
 * The preview proxy, with four ways in: the byte relay (byte-relay.ts), which takes the HTTP server's
 * connections and forwards the host form's GET and HEAD requests itself (`attachRelay`, `#relayAdmit`);
 * a plain `node:http` request listener in front of Koa for the requests the relay hands over (the lean
 * path: admitted requests are forwarded with undici, forwarder.ts, and never enter Koa); a Koa middleware
 * for what the lean path hands on (refusals, the sign-in paths); and an UpgradeDispatcher handler for
 * WebSockets (HMR, through `http-proxy-3`). Each request is classified (path form on the API's host, or
 * host form on the preview domain), admitted by the one `#admit` (credentials, ownership, share state, box
 * and port), then forwarded with its headers rewritten. Bodies stream in both directions; nothing is
 * buffered whole.
 */
import type {
  IncomingHttpHeaders,
  IncomingMessage,
  RequestListener,
  Server,
  ServerResponse,
} from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { ProxyServer } from "http-proxy-3";
import type { Middleware } from "koa";
import type { WorkspaceDriver } from "../../../stacks/driver.ts";
import { UpstreamAgent } from "../../boxnet/dialer.ts";
import { BoxUnreachableError, formatAuthority, type UpstreamResolver } from "../../boxnet/path-resolver.ts";
import { UPSTREAM_ONREAD } from "../../boxnet/upstream-reads.ts";
import { type Authenticator, CLERK_SESSION_COOKIE } from "../../domain/identity/authenticate.ts";
import type { Config } from "../../platform/config.ts";
import { cookieValues } from "../../platform/cookies.ts";
import { type DomainError, NotFound, Unauthenticated } from "../../platform/errors.ts";
import type { Logger } from "../../platform/logger.ts";
import type { SecretBox } from "../../platform/secret-box.ts";
import { closeWhenWritten, rejectUpgrade } from "../../platform/upgrade-dispatcher.ts";
import { SYSTEM, type UserActor } from "../../store/actors.ts";
import type { PgListener } from "../../store/listener.ts";
import { allows } from "../../store/policy.ts";
import type { Store } from "../../store/store.ts";
import { ByteRelay, type RelayExchange } from "./byte-relay.ts";
import { PreviewForwarder } from "./forwarder.ts";
import type { RequestHead } from "./http1.ts";
import { type PageName, page, REASONS } from "./pages.ts";
import { isAllowedUpstream, isLoopback } from "./port-policy.ts";
import {
  API_SESSION_COOKIE,
  type Classified,
  classify,
  forwardedRequestHead,
  forwardedResponseHead,
  HOST_RESERVED_PREFIX,
  isSafePath,
  type PreviewTarget,
  rewriteLocation,
  safeNext,
  sanitizeRequestHeaders,
  sanitizeResponseHeaders,
  withoutCookies,
} from "./request.ts";
import { type PreviewRoute, PreviewRoutes } from "./routing.ts";
import { PreviewTokens } from "./tokens.ts";

/** Fail fast on a box that does not answer at all (asleep, firewalled) rather than hang the browser. */
const CONNECT_TIMEOUT_MS = 5_000;

/** A path-form refusal carries the domain error, which the API's error middleware turns into its JSON shape. */
type Refusal = { status: number; page: PageName } | { status: number; error: DomainError };
type UpstreamTarget = ReturnType<UpstreamAgent["target"]>;

type Admission =
  | {
      ok: true;
      route: PreviewRoute;
      target: UpstreamTarget;
      authorities: string[];
      /** When the credential stops granting the route (ms; Infinity when it does not expire on its own). */
      grantedUntil: number;
      /** Decided by asking who listens on the port now (local mode): true of this request only. */
      askedListener: boolean;
    }
  | { ok: false; refusal: Refusal };

/**
 * A byte-relay exchange, with what its admission rested on: the next request on the same connection
 * reuses the decision when it carries the same Host and Cookie and the preview's cached route is the same
 * object (nothing about it changed since).
 */
interface HostExchange extends RelayExchange {
  hostHeader: string;
  cookieHeader: string | undefined;
  /** The Cookie the dev server gets (credentials removed), reused with the same Cookie header. */
  forwardedCookie: string | undefined;
  previewId: string;
  admission: Extract<Admission, { ok: true }>;
}

/** What admission reads of a request: node:http's IncomingMessage, or the byte relay's parsed head. */
type AdmittedRequest = Pick<IncomingMessage, "method" | "headers"> & { socket: { localPort?: number } };

/** Per-request facts the proxy's response hook needs. */
interface Forwarding {
  prefix: string | undefined;
  /** Every `host:port` the box may be reached on for this preview: redirects to any of them are ours. */
  authorities: string[];
}

/** A local box's port whose listener is gone, or not the workspace's, found when the relay was about to dial it. */
class ListenerRefused extends Error {
  readonly page: "upstream_down" | "not_own_listener";
  constructor(page: "upstream_down" | "not_own_listener") {
    super(page);
    this.page = page;
  }
}

const refuse = (status: number, pageName: PageName): Admission => ({
  ok: false,
  refusal: { status, page: pageName },
});

/** CSP for path-form responses: scripts and forms work, the API's origin and its cookies are out of reach. */
export const PATH_FORM_SANDBOX =
  "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/** What the preview proxy needs of the control plane (a narrow view of the API's dependencies). */
export interface PreviewGatewayDeps {
  config: Pick<Config, "previewDomain">;
  store: Store;
  log: Logger;
  upstream: UpstreamResolver;
  /** Its `localBoxes` says whose process listens on a port of a box on this machine. */
  driver: Pick<WorkspaceDriver, "localBoxes">;
  authenticator: Authenticator;
  listener: PgListener;
  secretBox: SecretBox;
  /** The control plane's own URL: https there means Secure cookies on preview hosts. */
  publicUrl: string;
}

/** The Koa state the proxy's middleware reads: the request id set by the app's first middleware. */
interface PreviewState {
  requestId: string;
}

/** Called once per request the lean path forwarded: the API's request metrics count previews too. */
export type ServedHook = (method: string, form: "path" | "host", status: number, seconds: number) => void;

export interface LeanListenerOptions {
  /** A listener for the preview domain only: anything but a preview host is a 404 page, never the API. */
  previewOnly?: boolean;
  onServed?: ServedHook;
}

export class PreviewGateway {
  readonly routes: PreviewRoutes;
  readonly tokens: PreviewTokens;
  readonly #deps: PreviewGatewayDeps;
  readonly #proxy: ProxyServer;
  /**
   * Names boxes for both forwarders and dials them through the shared upstream resolver (its path order,
   * remembered per box). Upgraded sockets are never pooled, so it keeps no sockets alive itself; HTTP
   * keep-alive is the undici forwarder's pool.
   */
  readonly #agent: UpstreamAgent;
  readonly #forwarder: PreviewForwarder;
  readonly #relay: ByteRelay<HostExchange>;
  #onRelayed: ServedHook | undefined;
  /** Clients' proxied WebSockets: the HTTP server no longer tracks upgraded sockets, so stop() ends them. */
  readonly #sockets = new Set<Duplex>();
  readonly #databasePort: number;
  /** Every port the control plane listens on (API, preview listener): never a preview's upstream. */
  readonly #ownPorts = new Set<number>();
  /** When each workspace's preview traffic was last recorded as activity (autostop), at most once a minute. */
  readonly #trafficRecorded = new Map<string, number>();
  #stopped = false;

  constructor(deps: PreviewGatewayDeps) {
    this.#deps = deps;
    // Routing rows are read as `system:gateway` and cached; who may use a route is decided per request,
    // by the authorization layer's policy (#admit, #hostSignIn).
    const routing = deps.store.as(SYSTEM.gateway).previews;
    this.routes = new PreviewRoutes((previewId) => routing.route(previewId));
    this.#agent = new UpstreamAgent(deps.upstream);
    this.tokens = new PreviewTokens(deps.secretBox);
    this.#databasePort = deps.store.databasePort;
    this.#proxy = new ProxyServer({ xfwd: false, changeOrigin: false });
    this.#forwarder = new PreviewForwarder(this.#agent, { connectionsPerUpstream: 256 });
    this.#relay = new ByteRelay({
      dial: (exchange) => this.#relayDial(exchange),
      admit: (head, client, previous) => this.#relayAdmit(head, client, previous),
    });
    // Callbacks handle every proxied request's errors; this only keeps an unexpected one from crashing.
    this.#proxy.on("error", (err) =>
      deps.log.warn({ code: (err as { code?: string }).code }, "preview proxy error"),
    );
    // http-proxy-3 leaves ends open that a client or dev server can hold: a handshake still pending at the
    // dev server when the client leaves, the dev server's socket when the client resets (it only ends it),
    // and the client's socket when the dev server closes (ended, on a server that allows half-open
    // connections). Each is closed here once the other side is gone.
    this.#proxy.on("proxyReqWs", (proxyReq, _req, socket, _options, head: Buffer | undefined) => {
      socket.once("close", () => proxyReq.destroy());
      // Until the dev server answers, a client may send nothing (RFC 6455 §4.1): its socket is read
      // meanwhile only to learn that it left (a FIN, which a server allowing half-open connections would
      // otherwise sit on), and one that broke the rule is dropped. Not when bytes came with its request.
      const watch = () => {
        if (socket.read() !== null) socket.destroy();
      };
      const left = () => socket.destroy();
      const unwatch = () => {
        socket.off("readable", watch);
        socket.off("end", left);
      };
      if (!head?.length) {
        socket.on("readable", watch);
        socket.once("end", left);
      }
      proxyReq.once("response", unwatch);
      proxyReq.once("upgrade", (_res, upstream: Duplex) => {
        unwatch();
        if (socket.destroyed) return void upstream.destroy();
        socket.once("close", () => upstream.destroy());
        upstream.once("close", () => closeWhenWritten(socket));
      });
    });
  }

  async start(): Promise<void> {
    await this.routes.start(this.#deps.listener);
  }

  /** An admitted preview request: the workspace is in use (idle autostop reads it). */
  #noteTraffic(workspaceId: string): void {
    const now = Date.now();
    if (now - (this.#trafficRecorded.get(workspaceId) ?? 0) < 60_000) return;
    this.#trafficRecorded.set(workspaceId, now);
    this.#deps.store
      .as(SYSTEM.gateway)
      .previews.recordTraffic(workspaceId, new Date(now))
      .catch((err: unknown) => this.#deps.log.warn({ err }, "recording preview traffic failed"));
  }

  /** Run before the HTTP server closes: open HMR sockets would otherwise hold its close forever. */
  stop(): void {
    this.#stopped = true;
    this.routes.stop();
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    this.#agent.destroy();
    this.#relay.close();
    void this.#forwarder.close();
  }

  get #secure(): boolean {
    return this.#deps.publicUrl.startsWith("https:");
  }

  /** Host-only, and `__Host-` where HTTPS allows it, so a sibling preview cannot plant or shadow it. */
  get hostCookieName(): string {
    return this.#secure ? "__Host-berth_preview" : "berth_preview";
  }

  #classify(req: Pick<IncomingMessage, "method" | "url" | "headers">): Classified {
    return classify(req.method ?? "GET", req.url ?? "/", req.headers.host, this.#deps.config.previewDomain);
  }

  /** Credentials, ownership and share state, then the upstream: refused before any connection opens. */
  async #admit(req: AdmittedRequest, target: PreviewTarget): Promise<Admission> {
    if (!isSafePath(target.forwardPath)) return refuse(400, "bad_path");
    let route: PreviewRoute | null;
    // The path form's credential is checked on every request (no connection reuses the decision).
    let grantedUntil: number | null = target.form === "path" ? Number.POSITIVE_INFINITY : null;
    if (target.form === "path") {
      let actor: UserActor;
      try {
        actor = await this.#deps.authenticator.resolve({
          authorization: req.headers.authorization,
          sessionCookie: cookieValues(req.headers.cookie, API_SESSION_COOKIE)[0],
          clerkSessionCookies: cookieValues(req.headers.cookie, CLERK_SESSION_COOKIE),
          method: req.method,
        });
      } catch (err) {
        if (err instanceof Unauthenticated) return { ok: false, refusal: { status: 401, error: err } };
        throw err;
      }
      route = await this.routes.get(target.previewId);
      if (!route || !allows(actor, "preview.read", route))
        return { ok: false, refusal: { status: 404, error: new NotFound("preview") } };
    } else {
      const cookies = cookieValues(req.headers.cookie, this.hostCookieName);
      if (cookies.length === 0) return refuse(401, "sign_in");
      route = await this.routes.get(target.previewId);
      for (const c of cookies)
        if (route && grantedUntil === null) grantedUntil = await this.tokens.hostCookieGrant(c, route);
      // One answer for "no such preview" and "not for you": a cookie holder learns nothing either way.
      if (!route || grantedUntil === null) return refuse(401, "sign_in");
    }
    const instance = route.instance;
    if (!instance || (!instance.publicIp && !instance.tailnetIp)) return refuse(502, "box_not_running");
    // Which address answers is the resolver's business (and its address policy refuses metadata, private
    // and, outside local mode, loopback addresses); here only: may this port be dialled on this box at all.
    const local = [instance.publicIp, instance.tailnetIp].some((ip) => ip !== null && isLoopback(ip));
    const reserved = new Set([req.socket.localPort ?? 0, this.#databasePort, ...this.#ownPorts]);
    if (
      !isAllowedUpstream(local ? "127.0.0.1" : "box", route.port, instance, { controlPlaneLocal: reserved })
    ) {
      return refuse(403, "port_forbidden");
    }
    if (local) {
      // Loopback reaches every process on this machine: dial only the workspace's own listener.
      const owner = await this.#deps.driver.localBoxes?.listenerOwner(route.workspaceId, route.port);
      if (owner === "none") return refuse(502, "upstream_down");
      if (owner !== "workspace") return refuse(403, "not_own_listener");
    }
    const box = {
      id: instance.id,
      publicIp: instance.publicIp,
      tailnetIp: instance.tailnetIp,
      probePort: instance.terminalPort,
    };
    // Absolute redirects a dev server builds from its own address are rewritten back into the preview.
    const authorities = [instance.publicIp, instance.tailnetIp]
      .filter((ip): ip is string => ip !== null)
      .map((ip) => formatAuthority(ip, route.port));
    this.#noteTraffic(route.workspaceId);
    return {
      ok: true,
      route,
      target: this.#agent.target(box, route.port),
      authorities,
      grantedUntil: grantedUntil ?? 0,
      askedListener: local,
    };
  }

  #prepare(req: IncomingMessage, target: PreviewTarget, websocket: boolean): void {
    const prefix = target.form === "path" ? target.prefix : undefined;
    req.url = target.forwardPath;
    sanitizeRequestHeaders(req.headers, {
      remoteAddress: req.socket.remoteAddress,
      proto: this.#secure ? "https" : "http",
      prefix,
      websocket,
    });
  }

  /** The dev server's response headers, made safe for the client and kept inside the preview. */
  #rewriteResponseHeaders(headers: IncomingHttpHeaders, fwd: Forwarding): void {
    sanitizeResponseHeaders(headers);
    // undici keeps a repeated header as an array; a redirect has one target, the first.
    const raw = headers.location as string | string[] | undefined;
    const location = Array.isArray(raw) ? raw[0] : raw;
    if (location) headers.location = rewriteLocation(location, fwd.authorities, fwd.prefix);
    // The path form serves the dev server's pages on the API's own origin. Sandboxed (no allow-same-origin)
    // they run in an opaque origin: they cannot read the API's cookies or call the API as the user. Apps
    // that need their own origin (cookies, HMR) use the host form.
    if (fwd.prefix !== undefined) {
      const existing = headers["content-security-policy"];
      headers["content-security-policy"] = [
        ...(Array.isArray(existing) ? existing : existing ? [existing] : []),
        PATH_FORM_SANDBOX,
      ].join(", ");
    }
  }

  /** A port this control plane listens on (server.ts, once listening): refused as a preview's port. */
  reservePort(port: number): void {
    this.#ownPorts.add(port);
  }

  /**
   * The lean path, the HTTP server's request listener: a preview request is classified and admitted here
   * and, once admitted, forwarded straight from node:http to the box, without Koa's context, middleware
   * chain and async-local request context (a Vite page is hundreds of such requests). The checks are the
   * same functions the Koa middleware runs. Everything else goes to `fallback` (the Koa app): API routes,
   * the host form's sign-in paths, and refusals, which Koa renders as before (the JSON error shape on the
   * path form, the proxy's pages on the host form) after admitting the request a second time.
   */
  requestListener(fallback: RequestListener, options: LeanListenerOptions = {}): RequestListener {
    const { previewOnly = false, onServed } = options;
    return (req, res) => {
      const target = this.#classify(req);
      if (!target || target.form === "refused") {
        if (previewOnly && target?.form !== "refused") return this.#writePage(res, "not_found");
        return fallback(req, res);
      }
      if (target.form === "path" && previewOnly) return this.#writePage(res, "not_found");
      if (target.form === "host" && target.forwardPath.startsWith(HOST_RESERVED_PREFIX)) {
        return fallback(req, res);
      }
      const started = onServed ? performance.now() : 0;
      this.#admit(req, target)
        .then(
          (admission) => {
            if (!admission.ok) return fallback(req, res);
            return this.#forward(req, res, target, admission).then(() => {
              onServed?.(
                req.method ?? "GET",
                target.form,
                res.statusCode,
                (performance.now() - started) / 1000,
              );
            });
          },
          // A failure to admit (the database unreachable while loading a route): Koa's error handling answers.
          () => fallback(req, res),
        )
        .catch((err: unknown) => {
          // Not expected (the forwarder reports upstream failures itself): never leave the client hanging.
          this.#deps.log.error({ err }, "preview request failed");
          if (res.headersSent) res.destroy();
          else {
            res.writeHead(500, { "content-type": "text/plain", "cache-control": "no-store" });
            res.end("Internal Server Error");
          }
        });
    };
  }

  /**
   * Lets the byte relay (byte-relay.ts) take `server`'s connections: host-form GET and HEAD requests it
   * admits are forwarded as bytes, and everything else reaches `server`'s request listener (the lean path,
   * then Koa) and upgrade handlers as before.
   */
  attachRelay(server: Server, options: Pick<LeanListenerOptions, "onServed"> = {}): void {
    this.#relay.attach(server);
    this.#onRelayed = options.onServed;
  }

  /**
   * The byte relay's admission: the same checks as the lean path's, on a parsed head; null hands the
   * request to node:http. A decision made for the connection's previous request is reused when nothing it
   * rests on changed (see HostExchange), which spares the route lookup and the cookie check.
   */
  #relayAdmit(
    head: RequestHead,
    client: Socket,
    previous: HostExchange | null,
  ): HostExchange | Promise<HostExchange | null> | null {
    const { host, cookie, target: path } = head;
    const prior = previous?.admission;
    // The same Host and Cookie as the connection's previous request: the same preview and credential, so
    // only what can change between requests is checked again: the path, the route, the grant's expiry.
    if (
      prior &&
      previous.hostHeader === host &&
      previous.cookieHeader === cookie &&
      this.routes.peek(previous.previewId) === prior.route &&
      Date.now() < prior.grantedUntil
    ) {
      if (path.startsWith(HOST_RESERVED_PREFIX)) return null;
      if (isSafePath(path)) {
        this.#noteTraffic(prior.route.workspaceId);
        return this.#hostExchange(head, client, previous.previewId, prior, previous.forwardedCookie);
      }
    }
    const target = this.#classify({ method: head.method, url: path, headers: { host } });
    // Only the host form: the path form's answers carry the API's error shape and sandbox, Koa's to render.
    if (target?.form !== "host" || target.forwardPath.startsWith(HOST_RESERVED_PREFIX)) return null;
    const request = { method: head.method, headers: { cookie }, socket: client };
    return this.#admit(request, target).then((admission) =>
      admission.ok
        ? this.#hostExchange(head, client, target.previewId, admission, withoutCookies(cookie))
        : null,
    );
  }

  /**
   * The relay's new connections to dev servers. On this machine (local mode), loopback reaches every
   * process, so the port's listener is checked again right before each dial: a decision reused for a
   * connection's later requests (#relayAdmit) never lets the relay dial a process that is not the
   * workspace's, and connections already pooled lead to the process checked when they were made.
   */
  async #relayDial(exchange: HostExchange): Promise<Socket> {
    const { admission, upstream } = exchange;
    if (admission.askedListener) {
      const owner = await this.#deps.driver.localBoxes?.listenerOwner(
        admission.route.workspaceId,
        upstream.port,
      );
      if (owner !== "workspace")
        throw new ListenerRefused(owner === "none" ? "upstream_down" : "not_own_listener");
    }
    return this.#agent.dial(upstream.host, upstream.port, { onread: UPSTREAM_ONREAD });
  }

  #hostExchange(
    head: RequestHead,
    client: Socket,
    previewId: string,
    admission: Extract<Admission, { ok: true }>,
    forwardedCookie: string | undefined,
  ): HostExchange {
    const started = performance.now();
    const { authorities } = admission;
    return {
      hostHeader: head.host,
      cookieHeader: head.cookie,
      forwardedCookie,
      previewId,
      admission,
      upstream: admission.target,
      requestHead: forwardedRequestHead(
        head,
        { remoteAddress: client.remoteAddress, proto: this.#secure ? "https" : "http" },
        forwardedCookie,
      ),
      responseHead: (response, close, keepAliveSeconds) =>
        forwardedResponseHead(response, close, keepAliveSeconds, (location) =>
          rewriteLocation(location, authorities, undefined),
        ),
      failed: (err) => page(this.#failurePage(err, admission.route)),
      served: (status) =>
        this.#onRelayed?.(head.method, "host", status, (performance.now() - started) / 1000),
    };
  }

  /** Forwards an admitted request; resolves once the response has ended or failed. */
  #forward(
    req: IncomingMessage,
    res: ServerResponse,
    target: PreviewTarget,
    admission: Extract<Admission, { ok: true }>,
  ): Promise<void> {
    const { route, authorities } = admission;
    this.#prepare(req, target, false);
    const fwd: Forwarding = { prefix: target.form === "path" ? target.prefix : undefined, authorities };
    return this.#forwarder.forward(req, res, admission.target, {
      onResponseHeaders: (headers) => this.#rewriteResponseHeaders(headers, fwd),
      onError: (err) => this.#upstreamFailed(err, route, res),
    });
  }

  #writePage(res: ServerResponse, name: PageName): void {
    const p = page(name);
    res.writeHead(p.status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    res.end(p.html);
  }

  middleware(): Middleware<PreviewState> {
    return async (ctx, next) => {
      const target = this.#classify(ctx.req);
      if (!target) return next();
      // Metrics and the access log label proxied requests by form, never by raw path.
      (ctx as { matched?: unknown }).matched = [{ path: `preview:${target.form}`, methods: [ctx.method] }];
      if (target.form === "refused") return this.#page(ctx, target.page);
      if (target.form === "host" && target.forwardPath.startsWith(HOST_RESERVED_PREFIX)) {
        return this.#hostSignIn(ctx, target);
      }
      const admission = await this.#admit(ctx.req, target);
      if (!admission.ok) {
        const r = admission.refusal;
        if ("error" in r) throw r.error; // path form: the API's JSON error shape
        return this.#page(ctx, r.page);
      }
      ctx.respond = false;
      await this.#forward(ctx.req, ctx.res, target, admission);
    };
  }

  /** Logs an upstream failure (its code only: the message names the box address) and picks the page to answer. */
  #failurePage(err: Error, route: PreviewRoute): PageName {
    if (err instanceof ListenerRefused) return err.page;
    this.#deps.log.warn(
      { previewId: route.previewId, code: (err as { code?: string }).code ?? err.name },
      "preview upstream unavailable",
    );
    // The box answered but refused the port: its dev server is down. Otherwise the box itself is out of
    // reach (asleep, or no address the resolver may dial).
    const boxAnswered =
      !(err instanceof BoxUnreachableError) || err.attempts.some((a) => a.result === "refused");
    return boxAnswered ? "upstream_down" : "box_not_running";
  }

  #upstreamFailed(err: Error, route: PreviewRoute, res: ServerResponse | Duplex): void {
    const pageName = this.#failurePage(err, route);
    if ("writeHead" in res && !res.headersSent) {
      this.#writePage(res, pageName);
    } else if ("writeHead" in res) {
      res.destroy();
    } else {
      rejectUpgrade(res, 502, REASONS[502]!, "preview upstream unavailable");
    }
  }

  #page(
    ctx: { status: number; type: string; body: unknown; set(k: string, v: string): void },
    name: PageName,
  ) {
    const p = page(name);
    ctx.status = p.status;
    ctx.set("Cache-Control", "no-store");
    ctx.type = "text/html; charset=utf-8";
    ctx.body = p.html;
  }

  /**
   * `/__berth/auth?code=…&next=…` (a one-time code from `POST /api/v1/previews/:id/open`) and
   * `/__berth/link?t=…` (a share link) become the host cookie, then a redirect strips them from the URL so
   * they reach neither the dev server nor its history, logs or Referer.
   */
  async #hostSignIn(
    ctx: Parameters<Middleware<PreviewState>>[0],
    target: Extract<PreviewTarget, { form: "host" }>,
  ): Promise<void> {
    const url = new URL(target.forwardPath, "http://preview.invalid");
    if (ctx.method !== "GET" || !["/__berth/auth", "/__berth/link"].includes(url.pathname)) {
      return this.#page(ctx, "not_found");
    }
    const route = await this.routes.get(target.previewId);
    let cookie: { token: string; ttlSeconds: number } | null = null;
    if (route && url.pathname === "/__berth/auth") {
      const auth = this.#deps.store.as(SYSTEM.auth);
      const userId = await this.tokens.redeemCode(
        auth.previews,
        url.searchParams.get("code") ?? "",
        route.previewId,
      );
      const user = userId ? await auth.users.find(userId) : null;
      if (user && allows(user, "preview.read", route)) {
        cookie = await this.tokens.mintHostCookie(route.previewId, { kind: "owner", userId: user.userId });
      }
    } else if (route && url.pathname === "/__berth/link") {
      const linkExpires = await this.tokens.verifyLink(url.searchParams.get("t") ?? "", route);
      // The cookie ends with the link: a link about to expire must not become twelve hours of access.
      if (linkExpires !== null) {
        cookie = await this.tokens.mintHostCookie(
          route.previewId,
          { kind: "link", shareVersion: route.shareVersion },
          linkExpires,
        );
      }
    }
    ctx.set("Referrer-Policy", "no-referrer");
    if (!cookie) return this.#page(ctx, "link_invalid");
    const attributes = `Path=/; HttpOnly; SameSite=Lax; Max-Age=${cookie.ttlSeconds}${this.#secure ? "; Secure" : ""}`;
    ctx.set("Set-Cookie", `${this.hostCookieName}=${cookie.token}; ${attributes}`);
    ctx.set("Cache-Control", "no-store");
    ctx.status = 303;
    ctx.set("Location", safeNext(url.searchParams.get("next")));
    // The byte relay handed this connection to node:http for the sign-in, and node:http keeps it: the page
    // the redirect leads to, and every module the browser then asks for on it, would go through node:http
    // and undici (about three times the relay's CPU per request). Closed, the browser opens a new one
    // for the page, which the relay takes.
    ctx.set("Connection", "close");
    ctx.body = "";
  }

  /** For the UpgradeDispatcher: every upgrade the proxy owns, including the ones it will refuse. */
  readonly matchUpgrade = (_url: URL, req: IncomingMessage): boolean => this.#classify(req) !== null;

  readonly handleUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    if (this.#stopped) return rejectUpgrade(socket, 503, REASONS[503]!);
    const target = this.#classify(req);
    if (!target) return rejectUpgrade(socket, 404, REASONS[404]!);
    if (target.form === "refused") {
      const p = page(target.page);
      return rejectUpgrade(socket, p.status, REASONS[p.status]!);
    }
    // No CORS protects a WebSocket: only the preview's own pages (same origin as the host) may open one.
    const origin = req.headers.origin;
    if (origin && !sameHost(origin, req.headers.host)) return rejectUpgrade(socket, 403, REASONS[403]!);
    if (socket.destroyed) return;
    // Tracked while it is admitted too: stop() ends it, rather than leave the server's close waiting on it.
    this.#sockets.add(socket);
    socket.once("close", () => this.#sockets.delete(socket));
    const admission = await this.#admit(req, target);
    // The client left, or stop() ended it, while it was admitted: nothing to answer, nothing to dial.
    if (socket.destroyed) return;
    if (!admission.ok) {
      const r = admission.refusal;
      return rejectUpgrade(
        socket,
        r.status,
        REASONS[r.status] ?? "Error",
        "error" in r ? r.error.message : r.page,
      );
    }
    const { route } = admission;
    this.#prepare(req, target, true);
    this.#proxy.ws(
      req,
      socket,
      head,
      { target: admission.target, agent: this.#agent, connectTimeout: CONNECT_TIMEOUT_MS },
      // A client that left makes the pending handshake fail too (proxyReqWs above): nothing to answer.
      (err) => {
        if (!socket.destroyed) this.#upstreamFailed(err, route, socket);
      },
    );
  };
}

function sameHost(origin: string, host: string | undefined): boolean {
  try {
    return Boolean(host) && new URL(origin).host === host!.toLowerCase();
  } catch {
    return false;
  }
}
