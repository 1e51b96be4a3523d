/**
 * The control plane's side of the central log store: a pino destination (logger.ts) that keeps the lines
 * worth keeping (warn and above, and every line about a workspace) and writes them in batches, so no
 * request waits for a row. The writer (the store, and an exporter) is attached once the database is up;
 * lines logged before that wait in the buffer. The buffer is bounded: past it lines are dropped and
 * counted, never queued without limit. The sink's own failures go to stderr, not back into the logger.
 */
import { Writable } from "node:stream";
import { PINO_LEVELS } from "../../box/protocol.ts";
import { isUuid } from "./ids.ts";
import type { LogLine } from "./log-line.ts";

/** pino's bookkeeping and what becomes a column, not a field. */
const NOT_FIELDS = new Set([
  "level",
  "time",
  "msg",
  "pid",
  "hostname",
  "v",
  "service",
  "workspaceId",
  "instanceId",
  "traceId",
]);

export interface LogStoreSinkOptions {
  /** Flush when this many lines wait (default 200). */
  batchSize?: number;
  /** …or this long after the first one (default 1000 ms). */
  flushMs?: number;
  /** Lines held at most; more are dropped and counted (default 5000). */
  maxBuffered?: number;
}

export class LogStoreSink extends Writable {
  readonly #batchSize: number;
  readonly #flushMs: number;
  readonly #maxBuffered: number;
  #buffer: LogLine[] = [];
  #pending = "";
  #timer: NodeJS.Timeout | null = null;
  #writer: ((lines: LogLine[]) => Promise<void>) | null = null;
  #flushing: Promise<void> = Promise.resolve();
  #dropped = 0;
  #lastComplaint = 0;

  constructor(options: LogStoreSinkOptions = {}) {
    super({ decodeStrings: false });
    this.#batchSize = options.batchSize ?? 200;
    this.#flushMs = options.flushMs ?? 1_000;
    this.#maxBuffered = options.maxBuffered ?? 5_000;
  }

  /** Lines dropped so far: buffer full, or the writer failed. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Starts writing, the buffered lines first. */
  attach(writer: (lines: LogLine[]) => Promise<void>): void {
    this.#writer = writer;
    if (this.#buffer.length) this.#schedule(0);
  }

  /** Writes what is buffered, and resolves once it is written (or has failed). */
  flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const writer = this.#writer;
    if (!writer || this.#buffer.length === 0) return this.#flushing;
    const batch = this.#buffer;
    this.#buffer = [];
    this.#flushing = this.#flushing
      .then(() => writer(batch))
      .catch((err: Error) => {
        this.#dropped += batch.length;
        this.#complain(`writing ${batch.length} lines failed: ${err.message}`);
      });
    return this.#flushing;
  }

  /** Flushes and stops writing; later lines are dropped. */
  async close(): Promise<void> {
    await this.flush();
    this.#writer = null;
  }

  override _write(chunk: string | Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.#pending += chunk.toString();
    let nl = this.#pending.indexOf("\n");
    while (nl >= 0) {
      const text = this.#pending.slice(0, nl);
      this.#pending = this.#pending.slice(nl + 1);
      const line = toLogLine(text);
      if (line) this.#add(line);
      nl = this.#pending.indexOf("\n");
    }
    done();
  }

  #add(line: LogLine): void {
    if (this.#buffer.length >= this.#maxBuffered) {
      this.#dropped++;
      this.#complain("buffer full; dropping lines");
      return;
    }
    this.#buffer.push(line);
    if (!this.#writer) return;
    if (this.#buffer.length >= this.#batchSize) this.#schedule(0);
    else if (!this.#timer) this.#schedule(this.#flushMs);
  }

  #schedule(ms: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.flush(), ms);
    this.#timer.unref();
  }

  /** At most once a minute, straight to stderr: logging it would feed the sink its own failure. */
  #complain(what: string): void {
    if (Date.now() - this.#lastComplaint < 60_000) return;
    this.#lastComplaint = Date.now();
    process.stderr.write(`berth log store: ${what} (${this.#dropped} dropped so far)\n`);
  }
}

/** A pino JSON line → a stored line, or null when it is not one to keep. */
export function toLogLine(text: string): LogLine | null {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return null;
  }
  const level = PINO_LEVELS[typeof rec.level === "number" ? rec.level : 30] ?? "info";
  const workspaceId = typeof rec.workspaceId === "string" && isUuid(rec.workspaceId) ? rec.workspaceId : null;
  // Agent lines printed for debugging (BERTH_AGENT_LOG_STDOUT) are stored already, by the agent API.
  if (rec.source === "agent") return null;
  if (!workspaceId && (typeof rec.level !== "number" || rec.level < 40)) return null;
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rec)) if (!NOT_FIELDS.has(k)) fields[k] = v;
  return {
    time: typeof rec.time === "number" ? new Date(rec.time) : new Date(),
    workspaceId,
    instanceId: typeof rec.instanceId === "string" && isUuid(rec.instanceId) ? rec.instanceId : null,
    source: "control-plane",
    level,
    message: typeof rec.msg === "string" ? rec.msg : "",
    fields,
    traceId: typeof rec.traceId === "string" ? rec.traceId : null,
  };
}
