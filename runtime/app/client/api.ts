/**
 * The client's HTTP side: every call is the public `/api/v1` with `Authorization: Bearer`, and every
 * failure becomes a ClientError carrying one line for the user and the exit code scripts rely on.
 */

/** Exit codes (documented in `berth --help` and the README). */
export const Exit = {
  OK: 0,
  /** The operation failed: a build ended failed or canceled, the server erred, anything else. */
  FAILED: 1,
  /** The command line was wrong. */
  USAGE: 2,
  /** Not logged in, or the control plane refused the token. */
  AUTH: 3,
  /** No such workspace, session or preview (or not yours). */
  NOT_FOUND: 4,
  /** The resource is in the wrong state for this (e.g. a build already runs, the box is asleep). */
  CONFLICT: 5,
  /** The control plane could not be reached. */
  UNREACHABLE: 6,
  /** Ctrl-C at a question (the shells' convention for SIGINT). */
  INTERRUPTED: 130,
} as const;

export class ClientError extends Error {
  readonly exitCode: number;
  /** The control plane could not answer for a moment (unreachable, or its proxy's 502-504): worth a retry. */
  readonly transient: boolean;
  constructor(exitCode: number, message: string, options: { transient?: boolean } = {}) {
    super(message);
    this.exitCode = exitCode;
    this.transient = options.transient ?? false;
  }
}

/** How long a polling GET keeps retrying a control plane that cannot answer (a restart takes seconds). */
const POLL_PATIENCE_MS = 30_000;

const STATUS_EXIT: Record<number, number> = {
  400: Exit.USAGE,
  401: Exit.AUTH,
  404: Exit.NOT_FOUND,
  409: Exit.CONFLICT,
};

export class ApiClient {
  readonly url: string;
  readonly #token: string;

  constructor(url: string, token: string) {
    this.url = url.replace(/\/+$/, "");
    this.#token = token;
  }

  /** Raw response; network failures become a ClientError, HTTP errors are the caller's to read. */
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${this.#token}`);
    try {
      return await fetch(this.url + path, { ...init, headers });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new ClientError(
        Exit.UNREACHABLE,
        `cannot reach ${this.url} (${cause?.code ?? cause?.message ?? (err as Error).message}); is the control plane running?`,
        { transient: true },
      );
    }
  }

  // biome-ignore lint/suspicious/noExplicitAny: answers are typed by the OpenAPI document, read loosely here
  async call<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.headers = { "content-type": "application/json" };
      init.body = JSON.stringify(body);
    }
    const res = await this.fetch(path, init);
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!res.ok) throw errorFrom(res.status, parsed, this.url);
    // Every answer of the API is JSON: anything else (a web page at a mistyped URL, a proxy's sign-in
    // page) would reach the caller as undefined and crash it with a stack trace.
    if (parsed === undefined) {
      const type = res.headers.get("content-type")?.split(";")[0] || "an empty body";
      throw new ClientError(
        Exit.FAILED,
        `${this.url}${path} answered with ${type}, not JSON: is ${this.url} a Berth control plane?`,
      );
    }
    return parsed as T;
  }

  /**
   * A GET that a loop repeats while it waits (a box coming up, a backup running). A control plane that
   * restarts (a deploy, a crash) refuses connections, or its proxy answers 502-504, for a few seconds:
   * no answer about what is awaited, so the GET is retried with backoff, for up to `patienceMs`, before
   * the error stands.
   */
  // biome-ignore lint/suspicious/noExplicitAny: as call()
  async poll<T = any>(path: string, patienceMs = POLL_PATIENCE_MS): Promise<T> {
    const giveUpAt = Date.now() + patienceMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.call<T>("GET", path);
      } catch (err) {
        if (!(err instanceof ClientError) || !err.transient || Date.now() >= giveUpAt) throw err;
        await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** attempt)));
      }
    }
  }
}

/** One line that says what went wrong and, where it helps, what to do. */
export function errorFrom(status: number, body: unknown, url: string): ClientError {
  const error = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
  const message = error?.message ?? `HTTP ${status}`;
  if (status === 401 && (error?.code === "token_revoked" || error?.code === "token_expired")) {
    // The control plane names its tokens page by path; a terminal user needs the whole URL.
    return new ClientError(
      Exit.AUTH,
      `${message.replace(" /#/tokens", ` ${url}/#/tokens`)} (${error.code}); then run 'berth login ${url}'`,
    );
  }
  if (status === 401) {
    return new ClientError(
      Exit.AUTH,
      `the control plane at ${url} refused the token (${error?.code ?? "unauthenticated"}: ${message}); run 'berth login ${url}' again`,
    );
  }
  return new ClientError(
    STATUS_EXIT[status] ?? Exit.FAILED,
    error?.code ? `${message} (${error.code})` : message,
    // A proxy in front of a control plane that is restarting (or not yet up) answers these.
    { transient: status >= 502 && status <= 504 },
  );
}
