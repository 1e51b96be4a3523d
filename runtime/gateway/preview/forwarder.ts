/**
 * Forwards one HTTP request to a dev server with undici: a keep-alive pool per box and port, dialled by the
 * upstream resolver (through `UpstreamAgent.dial`), the request body streamed up and the response streamed
 * back by a `dispatch()` handler (ResponseRelay) that writes into the client's response with its
 * backpressure and never holds a body whole. On this path undici does about twice the requests per second
 * of `http.request` (see the preview section of `npm run bench`). WebSocket upgrades stay with
 * http-proxy-3 (gateway.ts).
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { Agent, type Dispatcher } from "undici";
import type { UpstreamAgent } from "../../boxnet/dialer.ts";

export interface ForwardTarget {
  /** From `UpstreamAgent.target()`: names the box, never an address. */
  host: string;
  port: number;
}

export interface ForwardHooks {
  /** Rewrites the dev server's response headers in place before they are sent. */
  onResponseHeaders(headers: IncomingHttpHeaders): void;
  /** The upstream failed; `res` may already have sent its headers. */
  onError(err: Error): void;
}

/** The request's own framing: undici frames the body itself. */
const REQUEST_FRAMING = ["transfer-encoding", "expect"];
/** Node frames the response to the client itself (chunked or by length). */
const RESPONSE_FRAMING = ["transfer-encoding"];

export class PreviewForwarder {
  readonly #agent: Agent;

  constructor(dialler: UpstreamAgent, options: { connectionsPerUpstream: number }) {
    this.#agent = new Agent({
      connections: options.connectionsPerUpstream,
      // A dev server compiling a first request, or a long poll holding its answer, may take minutes before
      // its headers (undici's own default, 5 min); once the body flows, no limit between chunks, so
      // server-sent events stay open.
      headersTimeout: 300_000,
      bodyTimeout: 0,
      connect: (opts, callback) => {
        dialler.dial(opts.hostname, Number(opts.port)).then(
          (socket) => callback(null, socket),
          (err: Error) => callback(err, null),
        );
      },
    });
  }

  forward(
    req: IncomingMessage,
    res: ServerResponse,
    target: ForwardTarget,
    hooks: ForwardHooks,
  ): Promise<void> {
    const hasBody =
      req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0;
    // The gateway has already rewritten the request's headers in place for the dev server: no copy.
    const headers: IncomingHttpHeaders = req.headers;
    for (const name of REQUEST_FRAMING) delete headers[name];
    // The client may have gone while the request was being admitted: then nothing is sent upstream.
    if (res.destroyed || req.destroyed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#agent.dispatch(
        {
          origin: `http://${target.host}:${target.port}`,
          path: req.url ?? "/",
          method: (req.method ?? "GET") as Dispatcher.HttpMethod,
          headers: headers as Record<string, string | string[]>,
          body: hasBody ? req : null,
        },
        new ResponseRelay(req, res, hooks, resolve),
      );
    });
  }

  close(): Promise<void> {
    return this.#agent.destroy();
  }
}

/**
 * undici's handler for one forwarded request: writes the dev server's response into the client's as it
 * arrives. Lower level than `Agent.stream()` (no async resource, no `finished()` watcher, no AbortSignal
 * per request), which measured about a sixth less CPU per small request.
 */
class ResponseRelay implements Dispatcher.DispatchHandler {
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #hooks: ForwardHooks;
  readonly #done: () => void;
  #controller: Dispatcher.DispatchController | null = null;
  /** Set when the client went away: the abort that follows is ours, not the upstream's failure. */
  #clientGone = false;
  readonly #onClose = () => {
    if (this.#res.writableFinished) return;
    this.#clientGone = true;
    // The client went away before the response ended: stop the upstream request too.
    this.#controller?.abort(new Error("client closed the connection"));
  };
  readonly #onDrain = () => this.#controller?.resume();

  constructor(req: IncomingMessage, res: ServerResponse, hooks: ForwardHooks, done: () => void) {
    this.#req = req;
    this.#res = res;
    this.#hooks = hooks;
    this.#done = done;
    res.once("close", this.#onClose);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#clientGone) controller.abort(new Error("client closed the connection"));
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    upstream: IncomingHttpHeaders,
  ): void {
    // 1xx interim responses (103 Early Hints): only the final response is relayed.
    if (statusCode < 200) return;
    for (const name of RESPONSE_FRAMING) delete upstream[name];
    this.#closeIfBodyUnread();
    try {
      this.#hooks.onResponseHeaders(upstream);
      this.#res.writeHead(statusCode, upstream as Record<string, string | string[]>);
    } catch (err) {
      // A header Node refuses to send (invalid characters): the upstream's failure, answered as one.
      controller.abort(err as Error);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#res.destroyed) return;
    // Backpressure: stop reading from the box until the client has taken what was written.
    if (!this.#res.write(chunk)) {
      controller.pause();
      this.#res.once("drain", this.#onDrain);
    }
  }

  onResponseEnd(): void {
    this.#finish();
    this.#res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#finish();
    this.#closeIfBodyUnread();
    if (!this.#clientGone) this.#hooks.onError(err);
  }

  /**
   * A dev server may answer before the request's body has all arrived (or fail in the middle of it). undici
   * then stops sending the body and destroys the request stream, detaching it from the client's socket,
   * so nothing would read the rest: the connection must not be kept for another request. Node then answers
   * with `Connection: close` and closes the socket once the response is written.
   */
  #closeIfBodyUnread(): void {
    if (!this.#req.complete && !this.#res.headersSent) this.#res.shouldKeepAlive = false;
  }

  #finish(): void {
    this.#res.off("close", this.#onClose);
    this.#res.off("drain", this.#onDrain);
    this.#done();
  }
}
