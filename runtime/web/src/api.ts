/**
 * The one way the web client talks to the control plane: same-origin fetch authenticated as auth/ decides
 * (local: the session cookie; hosted: a Clerk Bearer token), JSON in and out, and the control plane's error
 * shape turned into an `ApiError` that names the problem.
 */
import { authHeaders } from "./auth/auth.ts";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
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
  const body = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!res.ok)
    throw new ApiError(
      res.status,
      body.error?.code ?? "http_error",
      body.error?.message ?? `HTTP ${res.status}`,
    );
  return body as T;
}

export interface Workspace {
  id: string;
  name: string;
  state: string;
  location: string;
  serverType: string;
  volumeSizeGb: number;
  stateChangedAt: string;
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

export interface Session {
  id: string;
  workspaceId: string;
  name: string;
  createdAt: string;
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
