/**
 * The one way the web client talks to the control plane: same-origin fetch authenticated as auth/ decides
 * (local: the session cookie; hosted: a Clerk Bearer token), JSON in and out, and the control plane's error
 * shape turned into an `ApiError` that names the problem (and, for bad input, the field).
 */
import { authHeaders } from "./auth/auth.ts";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** For a 400: the offending input field (`name`, `port`…), as the API names it; null when none. */
  readonly field: string | null;
  /** Everything else the error carried (e.g. `state` of a 409 `workspace_not_ready`). */
  readonly details: Record<string, unknown>;
  constructor(status: number, code: string, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.field = typeof details.field === "string" ? details.field : null;
  }
}

export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const res = await fetch(path, {
    method: init.method ?? "GET",
    credentials: "same-origin",
    headers: {
      ...(await authHeaders()),
      ...(init.body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  if (res.status === 204) return undefined as T;
  const body = (await res.json().catch(() => ({}))) as {
    error?: { code: string; message: string } & Record<string, unknown>;
  };
  if (!res.ok) {
    const { code, message, ...details } = body.error ?? { code: "http_error", message: `HTTP ${res.status}` };
    throw new ApiError(res.status, code ?? "http_error", message ?? `HTTP ${res.status}`, details);
  }
  return body as T;
}

/** A message for people: the API's own words for a known problem, a plain sentence for the rest. */
export function humanError(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 401) return "You are signed out. Sign in again to continue.";
    if (err.status === 429) return "Too many requests just now. Wait a moment and try again.";
    if (err.status >= 500) return "The server could not do that right now. Try again in a moment.";
    // "body.name: must match …" → the part after the field, which the form shows next to the field.
    return err.message.replace(/^body(\.[\w[\]]+)?: /, "");
  }
  if (err instanceof TypeError) return "The server cannot be reached. Check your connection.";
  return err instanceof Error ? err.message : String(err);
}

export interface Workspace {
  id: string;
  name: string;
  state: string;
  location: string;
  serverType: string;
  volumeSizeGb: number;
  stateChangedAt: string;
  createdAt?: string;
  /** Idle autostop: minutes before an idle workspace hibernates (null: never), and a pending warning. */
  idleTimeoutMinutes?: number | null;
  autostopWarnedAt?: string | null;
}

export interface Build {
  id: string;
  number: number;
  transition: "start" | "stop" | "destroy";
  status: "pending" | "running" | "succeeded" | "failed" | "canceled";
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
}

/** What Claude Code is doing in a session (from its hooks), and since when. */
export interface ClaudeStatus {
  state: "working" | "needs_you" | "idle" | "error" | "ended";
  detail: string | null;
  since: string;
}

export interface Session {
  id: string;
  workspaceId: string;
  name: string;
  createdAt: string;
  lastActivityAt?: string | null;
  claude?: ClaudeStatus | null;
}

export interface Preview {
  id: string;
  port: number;
  source: "detected" | "declared";
  process: string | null;
  framework: string | null;
  share: "owner" | "link";
  pathUrl: string;
}

export interface Notification {
  id: string;
  workspaceId: string;
  sessionId: string | null;
  sessionName?: string | null;
  kind: string;
  title: string;
  body: string;
  createdAt: string;
  readAt: string | null;
}

/** What this control plane is (runtime/api/routes/overview.ts): its driver and the user's limits. */
export interface Overview {
  driver: {
    name: string;
    /** The local driver: the machine every workspace runs on. */
    host?: { cpus: number; memoryBytes: number; diskTotalBytes: number | null; diskFreeBytes: number | null };
  };
  limits: { workspacesPerUser: number };
}

let overview: Promise<Overview | null> | null = null;

/** Fetched once per page load (it changes only with the server's configuration). */
export function loadOverview(): Promise<Overview | null> {
  overview ??= api<Overview>("/api/v1/overview").catch(() => {
    overview = null;
    return null;
  });
  return overview;
}
