/**
 * The HTTP client for the agent API (box/protocol.ts). Every request and response is validated against the
 * shared schemas; failures become typed errors the home loop can act on. The agent token is only ever put in
 * the Authorization header: it never appears in an error message or a log line.
 */
import type { z } from "zod";
import {
  AGENT_API_PATHS,
  describeIssues,
  type EventsRequest,
  type EventsResponse,
  errorBody,
  eventsRequest,
  eventsResponse,
  type HeartbeatRequestInput,
  type HeartbeatResponse,
  heartbeatRequest,
  heartbeatResponse,
  MAX_REQUEST_BYTES,
} from "../protocol.ts";
import { formatTraceparent, newSpan, type TraceContext } from "../telemetry/trace.ts";

/** 401/403: the control plane does not accept this agent's token. Retrying won't help until it changes. */
export class AgentAuthError extends Error {
  override name = "AgentAuthError";
  readonly status: number;
  constructor(status: number, detail: string) {
    super(
      `control plane rejected the agent token (HTTP ${status}${detail ? `: ${detail}` : ""}); ` +
        "check the agent-token credential and that this workspace instance is still current",
    );
    this.status = status;
  }
}

/** 400/413/422: the control plane refuses this request's content; resending it unchanged will fail again. */
export class AgentRequestRejectedError extends Error {
  override name = "AgentRequestRejectedError";
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(`control plane rejected the request (HTTP ${status} ${code}): ${message}`);
    this.status = status;
    this.code = code;
  }
}

/**
 * Network failure, timeout, an unreadable response, or a status that does not refuse the content (5xx, 429,
 * a proxy's 404 or 408...): try again later.
 */
export class ControlPlaneUnavailableError extends Error {
  override name = "ControlPlaneUnavailableError";
  readonly status: number | null;
  constructor(message: string, status: number | null = null, options?: { cause?: unknown }) {
    super(message, options);
    this.status = status;
  }
}

export interface ControlPlaneClientOptions {
  baseUrl: string;
  token: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export class ControlPlaneClient {
  private readonly baseUrl: string;
  private readonly token: string;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ControlPlaneClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.fetchImpl = options.fetch ?? fetch;
  }

  async heartbeat(body: HeartbeatRequestInput, trace?: TraceContext): Promise<HeartbeatResponse> {
    return this.post(AGENT_API_PATHS.heartbeat, heartbeatRequest, heartbeatResponse, body, trace);
  }

  async sendEvents(body: EventsRequest, trace?: TraceContext): Promise<EventsResponse> {
    return this.post(AGENT_API_PATHS.events, eventsRequest, eventsResponse, body, trace);
  }

  private async post<Req extends z.ZodType, Res extends z.ZodType>(
    path: string,
    requestSchema: Req,
    responseSchema: Res,
    body: z.input<Req>,
    trace?: TraceContext,
  ): Promise<z.infer<Res>> {
    // Our own bug if this fails: say so instead of letting the control plane answer 400.
    const checked = requestSchema.safeParse(body);
    if (!checked.success)
      throw new TypeError(`agent built an invalid ${path} request: ${describeIssues(checked.error)}`);
    const text = JSON.stringify(checked.data);
    if (Buffer.byteLength(text) > MAX_REQUEST_BYTES)
      throw new TypeError(`agent built a ${path} request over ${MAX_REQUEST_BYTES} bytes`);

    const span = newSpan(trace);
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.baseUrl}${path}`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${this.token}`,
          "content-type": "application/json",
          traceparent: formatTraceparent(span),
        },
        body: text,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const reason =
        (err as Error).name === "TimeoutError"
          ? `timed out after ${this.timeoutMs} ms`
          : (err as Error).message;
      throw new ControlPlaneUnavailableError(`POST ${path} failed: ${reason}`, null, { cause: err });
    }
    const raw = await res.text().catch(() => "");
    if (res.status === 401 || res.status === 403) throw new AgentAuthError(res.status, errorMessage(raw));
    // Only these say "this content is refused" (the loop then replaces the event). Any other status, such as
    // a 404 or 408 from a proxy or a deploy in progress, says nothing about the content: try again later.
    if (!res.ok && !REJECTS_CONTENT.has(res.status))
      throw new ControlPlaneUnavailableError(
        `POST ${path}: HTTP ${res.status}${errorMessage(raw) ? ` ${errorMessage(raw)}` : ""}`,
        res.status,
      );
    if (!res.ok) {
      const parsed = parseErrorBody(raw);
      throw new AgentRequestRejectedError(
        res.status,
        parsed?.code ?? "http_error",
        parsed?.message ?? raw.slice(0, 300),
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      throw new ControlPlaneUnavailableError(`POST ${path}: response is not JSON`, res.status);
    }
    const parsed = responseSchema.safeParse(json);
    if (!parsed.success)
      throw new ControlPlaneUnavailableError(
        `POST ${path}: response does not match the agent API v1: ${describeIssues(parsed.error)}`,
        res.status,
      );
    return parsed.data;
  }
}

/** 400/413/422 (AgentRequestRejectedError). */
const REJECTS_CONTENT = new Set([400, 413, 422]);

function parseErrorBody(raw: string): { code: string; message: string } | null {
  try {
    const parsed = errorBody.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data.error : null;
  } catch {
    return null;
  }
}

function errorMessage(raw: string): string {
  return parseErrorBody(raw)?.message.slice(0, 300) ?? "";
}
