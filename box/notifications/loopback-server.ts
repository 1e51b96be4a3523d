/**
 * The agent's loopback HTTP endpoint (127.0.0.1:$BERTH_AGENT_PORT):
 *   POST /hooks/claude             Claude Code hook input (JSON, <= 1 MiB), optional `X-Berth-Session` header
 *   POST /sessions/<name>/ensure   the session with its layout, before ttyd's attach command attaches to it
 *   GET  /healthz                  the agent's lifecycle, for the local driver and for humans
 * It binds to loopback only. Requests carrying an `Origin` header are refused, and POST needs
 * `Content-Type: application/json`, so a web page in a local browser cannot post here (the preflight fails).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { describeIssues, SESSION_NAME_RE } from "../protocol.ts";
import { type ClaudeHookInput, claudeHookInput, MAX_HOOK_BODY_BYTES } from "./hook-input.ts";

export type HookResult = "emitted" | "deduped" | "ignored";

export interface LoopbackServerOptions {
  host?: string;
  port: number;
  onHook: (input: ClaudeHookInput, session: string | null) => HookResult;
  health: () => Record<string, unknown> & { ok: boolean };
  /** Creates the session, or lays out a bare one (box/tmux/sessions.ts `ensure`). */
  onEnsureSession?: (name: string) => Promise<unknown>;
}

export interface LoopbackServer {
  port: number;
  close(): Promise<void>;
}

class LoopbackRequestError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function startLoopbackServer(options: LoopbackServerOptions): Promise<LoopbackServer> {
  const server: Server = createServer((req, res) => {
    route(options, req, res).catch((err: unknown) => {
      const e =
        err instanceof LoopbackRequestError
          ? err
          : new LoopbackRequestError(500, "internal", "internal error");
      if (!res.headersSent)
        send(res, e.status, { error: { code: e.code, message: e.message } }, e.status === 413);
      else res.destroy();
    });
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `cannot listen on ${options.host ?? "127.0.0.1"}:${options.port} for the agent's loopback endpoint: ${err.code ?? err.message}`,
        ),
      ),
    );
    server.listen(options.port, options.host ?? "127.0.0.1", () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function route(
  options: LoopbackServerOptions,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  if (req.headers.origin !== undefined)
    throw new LoopbackRequestError(
      403,
      "forbidden",
      "browser requests are not accepted on the agent's loopback endpoint",
    );
  const path = (req.url ?? "/").split("?")[0];
  if (path === "/healthz") {
    if (req.method !== "GET" && req.method !== "HEAD")
      throw new LoopbackRequestError(405, "method_not_allowed", "use GET");
    const health = options.health();
    return send(res, health.ok ? 200 : 503, health);
  }
  if (path === "/hooks/claude") {
    if (req.method !== "POST") throw new LoopbackRequestError(405, "method_not_allowed", "use POST");
    requireJson(req);
    const session = sessionHeader(req.headers["x-berth-session"]);
    const body = await readBody(req, MAX_HOOK_BODY_BYTES);
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      throw new LoopbackRequestError(400, "invalid_json", "body is not valid JSON");
    }
    const parsed = claudeHookInput.safeParse(json);
    if (!parsed.success)
      throw new LoopbackRequestError(400, "invalid_hook_input", describeIssues(parsed.error));
    const result = options.onHook(parsed.data, session);
    return send(res, 202, { result });
  }
  const ensure = ENSURE_PATH.exec(path ?? "");
  if (ensure && options.onEnsureSession) {
    if (req.method !== "POST") throw new LoopbackRequestError(405, "method_not_allowed", "use POST");
    requireJson(req);
    const name = ensure[1]!;
    if (!SESSION_NAME_RE.test(name))
      throw new LoopbackRequestError(400, "invalid_session", "the session name must match ^[a-z0-9-]{1,32}$");
    req.resume();
    await options.onEnsureSession(name);
    return send(res, 200, { session: name });
  }
  throw new LoopbackRequestError(404, "not_found", `no route ${req.method} ${path}`);
}

const ENSURE_PATH = /^\/sessions\/([^/]*)\/ensure$/;

/** A web page can only send JSON with a preflight, which this endpoint never answers. */
function requireJson(req: IncomingMessage): void {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json")
    throw new LoopbackRequestError(415, "unsupported_media_type", "Content-Type must be application/json");
}

function sessionHeader(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  const v = (Array.isArray(value) ? value[0] : value)?.trim() ?? "";
  // Empty means the hook ran outside tmux (or tmux was unreachable): a notification without a session.
  if (v === "") return null;
  if (!SESSION_NAME_RE.test(v))
    throw new LoopbackRequestError(400, "invalid_session", "X-Berth-Session must match ^[a-z0-9-]{1,32}$");
  return v;
}

async function readBody(req: IncomingMessage, max: number): Promise<string> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max)
    throw new LoopbackRequestError(413, "too_large", `body is ${declared} bytes; the limit is ${max}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) throw new LoopbackRequestError(413, "too_large", `body exceeds the ${max}-byte limit`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function send(res: ServerResponse, status: number, body: unknown, close = false): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    // After refusing an oversized body, don't keep the connection just to drain the rest of it.
    ...(close ? { connection: "close" } : {}),
  });
  res.end(text);
}
