/**
 * One restic driver for every repository kind: a local path, or any S3-compatible endpoint (R2, B2, S3,
 * MinIO, moto). The box agent backs up and restores with it; the control plane lists, browses and exports
 * snapshots with it (so export works while the box is hibernated). It imports nothing but Node.
 *
 * Secrets reach restic only through its environment: the password as RESTIC_PASSWORD_FILE (a 0600 file) or
 * RESTIC_PASSWORD, the S3 keys as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY. Never argv (world-readable in
 * /proc/<pid>/cmdline), never a log line: error texts are scrubbed of every secret value before they leave.
 *
 * Versions (../shared/notes/protocols.md §3): restic 0.14 (Debian, local mode) exits 1 for nearly every
 * failure and prints an 8-hex snapshot id; 0.17+ has exit codes 10 (no repository), 11 (locked), 12 (wrong
 * password) and a full id. Both are classified here, by code first and by stderr text second. Exit 3 is a
 * backup that could not read some files but still made a snapshot: a success with warnings.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";

export interface ResticRepository {
  /** `/path/to/repo` or `s3:<http(s)://endpoint>/<bucket>[/prefix]`. */
  url: string;
  /** The repository password: a file (preferred: RESTIC_PASSWORD_FILE) or the value itself. */
  password: { file: string } | { value: string };
  /** S3 keys; required for an `s3:` repository. */
  s3?: { accessKeyId: string; secretAccessKey: string; region?: string };
}

export interface RetryPolicy {
  /** Total tries of one operation, the first included. */
  attempts: number;
  baseMs: number;
  /** Cap of one wait. */
  maxMs: number;
}

/** A new R2 token answers 403 for about a minute: 2+4+8+16+30+30 s of waits cover it. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 7, baseMs: 2_000, maxMs: 30_000 };

export interface ResticLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ResticOptions {
  /** The restic binary (default `restic` on PATH, or BERTH_RESTIC). */
  binary?: string;
  /** restic's cache (speeds up incremental backups); unset: `--no-cache`. */
  cacheDir?: string;
  retry?: RetryPolicy;
  /** Waits between retries; tests replace it to avoid real waits. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  log?: ResticLogger;
}

export type ResticFailure =
  | "repository-missing"
  | "wrong-password"
  | "locked"
  | "unreachable"
  | "denied"
  | "canceled"
  | "killed"
  | "fatal";

const FAILURE_TEXT: Record<ResticFailure, string> = {
  "repository-missing": "the backup repository does not exist yet",
  "wrong-password": "the backup repository's password does not match",
  locked: "the backup repository is locked by another run",
  unreachable: "the backup storage could not be reached",
  denied: "the backup storage refused the credentials (access denied)",
  canceled: "the backup was canceled",
  killed: "restic was killed before it finished",
  fatal: "restic failed",
};

export class ResticError extends Error {
  override name = "ResticError";
  readonly failure: ResticFailure;
  readonly exitCode: number | null;
  /** Network faults and access denials (a new R2 token) may pass: worth another try. */
  readonly retryable: boolean;
  constructor(failure: ResticFailure, exitCode: number | null, detail: string) {
    // The message is what a user reads: the kind of failure first, then restic's own last words.
    super(detail ? `${FAILURE_TEXT[failure]}: ${detail}` : FAILURE_TEXT[failure]);
    this.failure = failure;
    this.exitCode = exitCode;
    this.retryable = failure === "unreachable" || failure === "denied";
  }
}

export interface BackupProgress {
  percent: number;
  filesDone: number;
  totalFiles: number;
  bytesDone: number;
  totalBytes: number;
}

export interface BackupSummary {
  /** The full 64-hex id (0.14 prints a short one; it is resolved through `snapshots`). */
  snapshotId: string;
  bytesAdded: number;
  filesNew: number;
  filesChanged: number;
  filesUnmodified: number;
  totalFiles: number;
  totalBytes: number;
  durationMs: number;
  /** Exit 3: some source files could not be read, the snapshot exists without them. */
  warnings: string[];
}

export interface Snapshot {
  id: string;
  shortId: string;
  time: string;
  paths: string[];
  hostname: string;
  tags: string[];
}

export interface SnapshotNode {
  path: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
  mtime: string;
}

export interface Retention {
  keepDaily: number;
  keepWeekly: number;
}
export const DEFAULT_RETENTION: Retention = { keepDaily: 7, keepWeekly: 4 };

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const NETWORK =
  /connection refused|connection reset|connection closed|no such host|i\/o timeout|timeout|deadline exceeded|EOF|broken pipe|network is unreachable|\b50[0234]\b|InternalError|ServiceUnavailable|SlowDown|RequestTimeout/i;
const DENIED = /\b403\b|access ?denied|forbidden|InvalidAccessKeyId|SignatureDoesNotMatch|\b401\b/i;
const MISSING =
  /Is there a repository at the following location|repository does not exist|unable to open config file|NoSuchBucket|config: no such file/i;

export const defaultSleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });

export class Restic {
  readonly #repo: ResticRepository;
  readonly #o: Required<Omit<ResticOptions, "cacheDir" | "log">> & Pick<ResticOptions, "cacheDir" | "log">;
  readonly #secrets: string[];

  constructor(repo: ResticRepository, options: ResticOptions = {}) {
    if (repo.url.startsWith("s3:") && !repo.s3)
      throw new ResticError("fatal", null, "an s3: repository needs S3 keys");
    this.#repo = repo;
    this.#o = {
      binary: process.env.BERTH_RESTIC || "restic",
      retry: DEFAULT_RETRY,
      sleep: defaultSleep,
      ...options,
    };
    this.#secrets = [
      "value" in repo.password ? repo.password.value : "",
      repo.s3?.accessKeyId ?? "",
      repo.s3?.secretAccessKey ?? "",
    ].filter((s) => s.length >= 4);
  }

  /** The environment restic runs with: the secrets, and nothing of ours that could leak them elsewhere. */
  env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
      RESTIC_REPOSITORY: this.#repo.url,
      // Progress lines a few times a second are plenty for a UI, and cheap to parse.
      RESTIC_PROGRESS_FPS: "2",
    };
    if ("file" in this.#repo.password) env.RESTIC_PASSWORD_FILE = this.#repo.password.file;
    else env.RESTIC_PASSWORD = this.#repo.password.value;
    if (this.#repo.s3) {
      env.AWS_ACCESS_KEY_ID = this.#repo.s3.accessKeyId;
      env.AWS_SECRET_ACCESS_KEY = this.#repo.s3.secretAccessKey;
      // R2 needs a region (restic#3757); `auto` is R2's own and is accepted by moto/MinIO.
      env.AWS_DEFAULT_REGION = this.#repo.s3.region ?? "auto";
    }
    return env;
  }

  /** Removes every secret value from a text that may reach a log, an API answer or the database. */
  scrub(text: string): string {
    let out = text;
    for (const s of this.#secrets) out = out.split(s).join("[redacted]");
    return out;
  }

  #globalArgs(): string[] {
    return this.#o.cacheDir ? ["--cache-dir", this.#o.cacheDir] : ["--no-cache"];
  }

  /** Starts restic; the caller reads stdout. */
  spawn(args: string[], signal?: AbortSignal, cwd?: string): ChildProcess {
    return spawn(this.#o.binary, [...this.#globalArgs(), ...args], {
      env: this.env(),
      ...(cwd ? { cwd } : {}),
      stdio: ["ignore", "pipe", "pipe"],
      ...(signal ? { signal, killSignal: "SIGINT" } : {}),
    });
  }

  /** Runs restic once; `onLine` gets stdout lines as they come (stdout is then not collected). */
  async #once(
    args: string[],
    signal?: AbortSignal,
    onLine?: (line: string) => void,
    cwd?: string,
  ): Promise<RunResult> {
    if (signal?.aborted) throw new ResticError("canceled", null, "");
    const child = this.spawn(args, signal, cwd);
    let stdout = "";
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      // Keep the tail only: a backup of unreadable files can print a lot.
      stderr = (stderr + d).slice(-16_384);
    });
    const lines = onLine ? createInterface({ input: child.stdout! }) : null;
    if (lines) lines.on("line", (l) => onLine!(l));
    else
      child.stdout!.setEncoding("utf8").on("data", (d: string) => {
        stdout += d;
      });
    const [code, sig] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      child.on("error", (err) => {
        stderr += `\n${(err as Error).message}`;
      });
      child.on("close", (c, s) => resolve([c, s]));
    });
    if (signal?.aborted) throw new ResticError("canceled", code, "");
    if (code === null) throw new ResticError("killed", null, `signal ${sig}`);
    return { code, stdout, stderr };
  }

  /** A failed run as a ResticError, by exit code (0.17+) and stderr (0.14). */
  classify(code: number | null, stderr: string): ResticError {
    const detail = this.scrub(lastWords(stderr));
    if (code === 130) return new ResticError("canceled", code, detail);
    if (code === 12 || /wrong password|no key found/i.test(stderr))
      return new ResticError("wrong-password", code, detail);
    if (code === 11 || /unable to create lock|repository is already locked/i.test(stderr))
      return new ResticError("locked", code, detail);
    // Before "missing": 0.14 words an unreachable endpoint as "unable to open config file: ... refused".
    if (DENIED.test(stderr)) return new ResticError("denied", code, detail);
    if (NETWORK.test(stderr)) return new ResticError("unreachable", code, detail);
    if (code === 10 || MISSING.test(stderr)) return new ResticError("repository-missing", code, detail);
    return new ResticError("fatal", code, detail);
  }

  /** Runs an operation, retrying network faults and denials with exponential backoff and a cap. */
  async #withRetry<T>(what: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    const { attempts, baseMs, maxMs } = this.#o.retry;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof ResticError) || !err.retryable || attempt >= attempts || signal?.aborted)
          throw err;
        const wait = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
        this.#o.log?.warn(
          { op: what, attempt, waitMs: wait, failure: err.failure, err: err.message },
          "restic failed; retrying",
        );
        await this.#o.sleep(wait, signal).catch(() => {
          throw new ResticError("canceled", null, "");
        });
      }
    }
  }

  async #run(
    what: string,
    args: string[],
    signal?: AbortSignal,
    okCodes: number[] = [0],
  ): Promise<RunResult> {
    return this.#withRetry(what, signal, async () => {
      const r = await this.#once(args, signal);
      if (!okCodes.includes(r.code)) throw this.classify(r.code, r.stderr);
      return r;
    });
  }

  /** Creates the repository unless it exists; safe to call before every run. */
  async ensureInit(signal?: AbortSignal): Promise<"created" | "exists"> {
    return this.#withRetry("init", signal, async () => {
      const probe = await this.#once(["cat", "config"], signal);
      if (probe.code === 0) return "exists" as const;
      const why = this.classify(probe.code, probe.stderr);
      if (why.failure !== "repository-missing") throw why;
      const init = await this.#once(["init"], signal);
      if (init.code === 0) return "created" as const;
      // Another client created it between our probe and init: fine.
      if (/config file already exists/i.test(init.stderr)) return "exists" as const;
      throw this.classify(init.code, init.stderr);
    });
  }

  /** Removes stale locks (dead process on this host, or older than 30 min): after a crash, before prune. */
  async unlock(signal?: AbortSignal): Promise<void> {
    await this.#run("unlock", ["unlock"], signal);
  }

  async backup(
    paths: string[],
    options: {
      tags?: string[];
      host?: string;
      excludeFile?: string;
      /**
       * Run from here with relative `paths`: the snapshot's tree then starts at this directory (`/user/…`),
       * so restores and exports do not depend on where the volume is mounted.
       */
      cwd?: string;
      signal?: AbortSignal;
      onProgress?: (p: BackupProgress) => void;
    } = {},
  ): Promise<BackupSummary> {
    const args = ["backup", "--json", "--exclude-caches"];
    if (options.host) args.push("--host", options.host);
    for (const t of options.tags ?? []) args.push("--tag", t);
    if (options.excludeFile && existsSync(options.excludeFile))
      args.push("--exclude-file", options.excludeFile);
    args.push("--", ...paths);
    const started = Date.now();
    return this.#withRetry("backup", options.signal, async () => {
      let summary: Record<string, unknown> | null = null;
      const r = await this.#once(
        args,
        options.signal,
        (line) => {
          const msg = parseJson(line);
          if (!msg) return;
          if (msg.message_type === "status" && options.onProgress) {
            options.onProgress({
              percent: num(msg.percent_done),
              filesDone: num(msg.files_done),
              totalFiles: num(msg.total_files),
              bytesDone: num(msg.bytes_done),
              totalBytes: num(msg.total_bytes),
            });
          } else if (msg.message_type === "summary") summary = msg;
        },
        options.cwd,
      );
      // 3: some files were unreadable, but the snapshot exists (it has a summary with its id).
      const s = summary as Record<string, unknown> | null;
      if ((r.code !== 0 && r.code !== 3) || !s || typeof s.snapshot_id !== "string")
        throw this.classify(r.code, r.stderr || "no snapshot was created");
      const snapshotId = await this.#fullId(s.snapshot_id, options.signal);
      return {
        snapshotId,
        bytesAdded: num(s.data_added_packed ?? s.data_added),
        filesNew: num(s.files_new),
        filesChanged: num(s.files_changed),
        filesUnmodified: num(s.files_unmodified),
        totalFiles: num(s.total_files_processed),
        totalBytes: num(s.total_bytes_processed),
        durationMs: Date.now() - started,
        warnings: r.code === 3 ? [this.scrub(lastWords(r.stderr))] : [],
      };
    });
  }

  async #fullId(id: string, signal?: AbortSignal): Promise<string> {
    if (/^[0-9a-f]{64}$/.test(id)) return id;
    // 0.14 prints the short id: `list snapshots` names the files (full ids) without reading them.
    const r = await this.#run("list", ["list", "snapshots"], signal);
    return (
      r.stdout
        .split("\n")
        .find((line) => line.startsWith(id))
        ?.trim() ?? id
    );
  }

  async snapshots(signal?: AbortSignal): Promise<Snapshot[]> {
    const r = await this.#run("snapshots", ["snapshots", "--json"], signal);
    const list = (parseJson(r.stdout) ?? []) as unknown as Array<Record<string, unknown>>;
    return (Array.isArray(list) ? list : []).map((s) => ({
      id: String(s.id),
      shortId: String(s.short_id ?? String(s.id).slice(0, 8)),
      time: String(s.time),
      paths: (s.paths as string[]) ?? [],
      hostname: String(s.hostname ?? ""),
      tags: (s.tags as string[] | null) ?? [],
    }));
  }

  /** Every node of a snapshot (restic's `ls --json`), optionally under `dir`. */
  async ls(snapshot: string, signal?: AbortSignal): Promise<SnapshotNode[]> {
    assertSnapshotId(snapshot);
    const r = await this.#run("ls", ["ls", "--json", snapshot], signal);
    const nodes: SnapshotNode[] = [];
    for (const line of r.stdout.split("\n")) {
      const n = parseJson(line);
      if (n?.struct_type !== "node") continue;
      const type = n.type === "file" || n.type === "dir" || n.type === "symlink" ? n.type : "other";
      nodes.push({ path: String(n.path), type, size: num(n.size), mtime: String(n.mtime ?? "") });
    }
    return nodes;
  }

  /** Restores a snapshot (or only `include` paths of it) under `target`, keeping absolute paths. */
  async restore(
    snapshot: string,
    target: string,
    include: string[] = [],
    signal?: AbortSignal,
  ): Promise<void> {
    assertSnapshotId(snapshot);
    const args = ["restore", snapshot, "--target", target];
    for (const p of include) args.push("--include", p);
    await this.#run("restore", args, signal);
  }

  /** `forget --prune` with the retention, after clearing stale locks (prune takes an exclusive lock). */
  async forget(
    retention: Retention = DEFAULT_RETENTION,
    options: { host?: string; signal?: AbortSignal } = {},
  ) {
    await this.unlock(options.signal);
    const args = [
      "forget",
      "--prune",
      "--keep-daily",
      String(retention.keepDaily),
      "--keep-weekly",
      String(retention.keepWeekly),
    ];
    if (options.host) args.push("--host", options.host);
    await this.#run("forget", args, options.signal);
  }

  /**
   * The snapshot as a tar stream (`restic dump --archive tar <id> /`). The caller pipes it (through gzip)
   * and must consume `done` to learn whether restic finished cleanly.
   */
  dumpTar(snapshot: string, signal?: AbortSignal): { stream: Readable; done: Promise<void> } {
    assertSnapshotId(snapshot);
    const child = this.spawn(["dump", "--archive", "tar", snapshot, "/"], signal);
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-16_384);
    });
    const done = new Promise<void>((resolve, reject) => {
      child.on("error", (err) => reject(new ResticError("fatal", null, this.scrub(err.message))));
      child.on("close", (code) => (code === 0 ? resolve() : reject(this.classify(code, stderr))));
    });
    return { stream: child.stdout!, done };
  }
}

/** Snapshot ids reach argv: only hex (8 to 64), never an option or a path. */
export function assertSnapshotId(id: string): void {
  if (!/^[0-9a-f]{8,64}$/.test(id)) throw new ResticError("fatal", null, "invalid snapshot id");
}

function lastWords(stderr: string): string {
  const lines = stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('{"message_type":"status"'));
  // JSON error lines (0.18+ exit_error, 0.17 error.message) carry the message; plain text otherwise.
  const last = lines.slice(-2).map((l) => {
    const j = parseJson(l);
    const m = j?.message ?? (j?.error as { message?: string } | undefined)?.message;
    return typeof m === "string" ? m : l;
  });
  return last.join(" ").slice(0, 500);
}

function parseJson(line: string): Record<string, unknown> | null {
  const t = line.trim();
  if (!t.startsWith("{") && !t.startsWith("[")) return null;
  try {
    return JSON.parse(t) as Record<string, unknown>;
  } catch {
    return null;
  }
}

function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}
