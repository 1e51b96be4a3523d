/**
 * A build's log, written to `workspace_build_logs` in order and announced with NOTIFY so live followers
 * (SSE) see lines as they land. Writes are batched: a driver may emit lines faster than one INSERT each.
 */
import type pg from "pg";
import type { BuildLog, BuildLogLevel } from "../../../stacks/driver.ts";

export const BUILD_LOG_CHANNEL = "berth_build_log";
const MAX_LINE = 8_192;

interface PendingLine {
  level: BuildLogLevel | "stage";
  stage: string | null;
  message: string;
}

export class DbBuildLog implements BuildLog {
  readonly #pool: pg.Pool;
  readonly #buildId: string;
  #nextSeq: number;
  #stage: string | null = null;
  #buffer: PendingLine[] = [];
  #writing: Promise<void> = Promise.resolve();
  #failed: unknown = null;

  private constructor(pool: pg.Pool, buildId: string, nextSeq: number) {
    this.#pool = pool;
    this.#buildId = buildId;
    this.#nextSeq = nextSeq;
  }

  /** Continues after the last stored line, so a resumed build appends rather than overwrites. */
  static async open(pool: pg.Pool, buildId: string): Promise<DbBuildLog> {
    const { rows } = await pool.query<{ next: number }>(
      "SELECT coalesce(max(seq), 0) + 1 AS next FROM workspace_build_logs WHERE build_id = $1",
      [buildId],
    );
    return new DbBuildLog(pool, buildId, rows[0]!.next);
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
      const values: unknown[] = [];
      const rows = batch.map((l, i) => {
        values.push(this.#buildId, this.#nextSeq + i, l.level, l.stage, l.message);
        const o = i * 5;
        return `($${o + 1}, $${o + 2}, $${o + 3}, $${o + 4}, $${o + 5})`;
      });
      try {
        await this.#pool.query(
          `WITH ins AS (INSERT INTO workspace_build_logs (build_id, seq, level, stage, message) VALUES ${rows.join(", ")} RETURNING 1)
           SELECT pg_notify('${BUILD_LOG_CHANNEL}', $1::text) FROM (SELECT 1) x WHERE EXISTS (SELECT 1 FROM ins)`,
          values,
        );
        this.#nextSeq += batch.length;
      } catch (err) {
        this.#failed ??= err;
      }
    }
  }
}
