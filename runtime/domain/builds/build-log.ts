/**
 * A build's log, written to `workspace_build_logs` in order and announced with NOTIFY so live followers
 * (SSE) see lines as they land. Writes are batched: a driver may emit lines faster than one INSERT each.
 */
import type { BuildLog, BuildLogLevel } from "../../../stacks/driver.ts";
import type { BuildQueue } from "../../store/build-queue.ts";

/** Where the lines go: the build worker's queue (the worker is the only writer of build logs). */
type LogSink = Pick<BuildQueue, "nextLogSeq" | "appendLog">;

const MAX_LINE = 8_192;

interface PendingLine {
  level: BuildLogLevel | "stage";
  stage: string | null;
  message: string;
}

export class DbBuildLog implements BuildLog {
  readonly #sink: LogSink;
  readonly #buildId: string;
  #nextSeq: number;
  #stage: string | null = null;
  #buffer: PendingLine[] = [];
  #writing: Promise<void> = Promise.resolve();
  #failed: unknown = null;

  private constructor(sink: LogSink, buildId: string, nextSeq: number) {
    this.#sink = sink;
    this.#buildId = buildId;
    this.#nextSeq = nextSeq;
  }

  /** Continues after the last stored line, so a resumed build appends rather than overwrites. */
  static async open(sink: LogSink, buildId: string): Promise<DbBuildLog> {
    return new DbBuildLog(sink, buildId, await sink.nextLogSeq(buildId));
  }

  get currentStage(): string | null {
    return this.#stage;
  }

  stage(name: string): void {
    this.#stage = name.slice(0, 200);
    this.#push({ level: "stage", stage: this.#stage, message: this.#stage });
  }

  line(level: BuildLogLevel, message: string): void {
    const text = message.length > MAX_LINE ? `${message.slice(0, MAX_LINE)}… [truncated]` : message;
    this.#push({ level, stage: this.#stage, message: text });
  }

  /** Waits until every line so far is stored; rethrows a storage failure. */
  async flush(): Promise<void> {
    await this.#writing;
    if (this.#failed) throw this.#failed;
  }

  #push(line: PendingLine): void {
    this.#buffer.push(line);
    if (this.#buffer.length === 1) this.#writing = this.#writing.then(() => this.#drain());
  }

  async #drain(): Promise<void> {
    while (this.#buffer.length > 0) {
      const batch = this.#buffer;
      this.#buffer = [];
      try {
        await this.#sink.appendLog(this.#buildId, this.#nextSeq, batch);
        this.#nextSeq += batch.length;
      } catch (err) {
        this.#failed ??= err;
      }
    }
  }
}
