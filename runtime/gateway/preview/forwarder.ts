/**
 * Forwards one HTTP request to a dev server with undici: a keep-alive pool per box and port, dialled by the
 * upstream resolver (through `UpstreamAgent.dial`), the request body streamed up and the response streamed
 * back through `stream()`, which writes into the client's response with its backpressure and never holds
 * a body whole. On this path undici does about twice the requests per second of `http.request` (see the
 * preview section of `npm run bench`). WebSocket upgrades stay with http-proxy-3 (gateway.ts).
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
    // The client went away before the response ended: stop the upstream request too.
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.once("close", onClose);
    // The client may have gone while the request was being admitted: then nothing is sent upstream.
    if (res.destroyed || req.destroyed) {
      res.off("close", onClose);
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.#agent.stream(
        {
          origin: `http://${target.host}:${target.port}`,
          path: req.url ?? "/",
          method: (req.method ?? "GET") as Dispatcher.HttpMethod,
          headers: headers as Record<string, string | string[]>,
          body: hasBody ? req : null,
          signal: abort.signal,
        },
        ({ statusCode, headers: upstream }) => {
          for (const name of RESPONSE_FRAMING) delete upstream[name];
          hooks.onResponseHeaders(upstream);
          res.writeHead(statusCode, upstream as Record<string, string | string[]>);
          return res;
        },
        (err) => {
          res.off("close", onClose);
          if (err && !abort.signal.aborted) hooks.onError(err);
          resolve();
        },
      );
    });
  }

  close(): Promise<void> {
    return this.#agent.destroy();
  }
}
