/**
 * The central log store (`log_entries`): what box agents ship and what the control plane keeps of its own
 * lines, searchable by workspace, time, level and text.
 *
 * - Every line is redacted here, on the way in (platform/redact.ts): no caller can store a secret-shaped
 *   value by forgetting to. And made storable (platform/pg-values.ts): one line with a NUL would otherwise
 *   fail the whole batch's INSERT, and every line in it would be lost.
 * - The table is partitioned by UTC day. Retention drops whole partitions (`dropExpired`), which costs
 *   nothing per row and leaves no bloat; `ensurePartitions` creates today's and the next two days' ahead
 *   of time (at start-up and hourly). A line's time is clamped into the window the partitions cover
 *   (yesterday 00:00 to a few minutes from now; a clamped line keeps its own time in `fields.loggedAt`),
 *   so an insert never meets a day without a partition, and a box's skewed clock cannot pick one.
 * - An agent writes its own workspace's lines only; a user reads their own workspaces' lines (someone
 *   else's workspace is NotFound); operators read everything.
 */
import { and, desc, eq, gte, ilike, inArray, lt, type SQL, sql } from "drizzle-orm";
import { Invalid, NotFound } from "../platform/errors.ts";
import { pgSafe, pgText } from "../platform/pg-values.ts";
import { redactFields, redactSecrets } from "../platform/redact.ts";
import type { Access } from "./access.ts";
import { LOG_LEVELS, LOG_SOURCES, logEntries } from "./schema.ts";

export type LogSource = (typeof LOG_SOURCES)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];
export { LOG_LEVELS, LOG_SOURCES };

export interface LogRecord {
  time: Date;
  workspaceId: string | null;
  instanceId: string | null;
  source: LogSource;
  level: LogLevel;
  message: string;
  fields: Record<string, unknown>;
  traceId: string | null;
}

export interface LogEntry extends LogRecord {
  id: number;
}

export interface LogQuery {
  /** One workspace's lines; absent: every line the actor reaches (operators). */
  workspaceId?: string;
  since?: Date;
  until?: Date;
  /** This level and above. */
  level?: LogLevel;
  source?: LogSource;
  /** Case-insensitive substring of the message. */
  q?: string;
  limit: number;
  /** From a previous page's `nextCursor`. */
  cursor?: string;
}

export interface LogPage {
  entries: LogEntry[];
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  nextCursor: string | null;
}

const DAY_MS = 86_400_000;
/** How far ahead of the receiving clock a line may be stamped. */
const FUTURE_SKEW_MS = 5 * 60_000;
const PARTITION = /^log_entries_p(\d{4})(\d{2})(\d{2})$/;

const dayStart = (t: Date) => new Date(Math.floor(t.getTime() / DAY_MS) * DAY_MS);
const partitionName = (day: Date) => `log_entries_p${day.toISOString().slice(0, 10).replaceAll("-", "")}`;

/** The opaque page cursor: the last entry's time and id. */
function encodeCursor(entry: { time: Date; id: number }): string {
  return Buffer.from(`${entry.time.toISOString()}|${entry.id}`).toString("base64url");
}

function decodeCursor(cursor: string): { time: Date; id: number } {
  const [iso, id] = Buffer.from(cursor, "base64url").toString().split("|");
  const time = new Date(iso ?? "");
  if (!iso || Number.isNaN(time.getTime()) || !/^\d{1,18}$/.test(id ?? ""))
    throw new Invalid("invalid_input", "cursor: not a cursor this API returned", { field: "cursor" });
  return { time, id: Number(id) };
}

export class LogStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /**
   * Stores lines, redacted, in one statement, and returns them as stored (what may be shipped on). An
   * agent's lines must be its own workspace's.
   */
  async append(records: LogRecord[], now = new Date()): Promise<LogRecord[]> {
    const scope = this.#access.scopeOf("log.write", "log");
    if (records.length === 0) return [];
    const earliest = dayStart(new Date(now.getTime() - DAY_MS));
    const latest = new Date(now.getTime() + FUTURE_SKEW_MS);
    const rows = records.map((r) => {
      if (scope.kind !== "all" && (scope.kind !== "workspace" || r.workspaceId !== scope.workspaceId))
        throw new NotFound("workspace");
      const clamped = r.time < earliest ? earliest : r.time > latest ? latest : r.time;
      const fields = pgSafe(redactFields(r.fields));
      if (clamped !== r.time) fields.loggedAt = r.time.toISOString();
      return {
        time: clamped,
        workspaceId: r.workspaceId,
        instanceId: r.instanceId,
        source: r.source,
        level: r.level,
        message: pgText(redactSecrets(r.message)),
        fields,
        traceId: r.traceId,
      };
    });
    await this.#access.db.insert(logEntries).values(rows);
    return rows;
  }

  /** Newest first, a page at a time. A workspace the actor does not reach is NotFound. */
  async search(query: LogQuery): Promise<LogPage> {
    const t = logEntries;
    const conditions: Array<SQL | undefined> = [];
    if (query.workspaceId !== undefined) {
      await this.#access.requireWorkspace("log.read", "workspace", query.workspaceId);
      conditions.push(eq(t.workspaceId, query.workspaceId));
    } else {
      // Users reach their own workspaces' lines only; control-plane lines with no workspace are operators'.
      const scope = this.#access.scopeOf("log.read", "log");
      if (scope.kind !== "all") throw new NotFound("log");
    }
    if (query.since) conditions.push(gte(t.time, query.since));
    if (query.until) conditions.push(lt(t.time, query.until));
    if (query.level) conditions.push(inArray(t.level, LOG_LEVELS.slice(LOG_LEVELS.indexOf(query.level))));
    if (query.source) conditions.push(eq(t.source, query.source));
    if (query.q) conditions.push(ilike(t.message, `%${query.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`));
    if (query.cursor) {
      const c = decodeCursor(query.cursor);
      conditions.push(sql`(${t.time}, ${t.id}) < (${c.time.toISOString()}::timestamptz, ${c.id})`);
    }
    const rows = await this.#access.db
      .select()
      .from(t)
      .where(and(...conditions))
      .orderBy(desc(t.time), desc(t.id))
      .limit(query.limit + 1);
    const entries = rows.slice(0, query.limit) as LogEntry[];
    return {
      entries,
      nextCursor: rows.length > query.limit ? encodeCursor(entries.at(-1)!) : null,
    };
  }

  /** Creates the partitions for yesterday through `daysAhead` days from `now` (UTC); idempotent. */
  async ensurePartitions(now = new Date(), daysAhead = 2): Promise<void> {
    this.#access.require("log.retain", "log");
    for (let d = -1; d <= daysAhead; d++) {
      const day = dayStart(new Date(now.getTime() + d * DAY_MS));
      const next = new Date(day.getTime() + DAY_MS);
      await this.#access.pool
        .query(
          `CREATE TABLE IF NOT EXISTS ${partitionName(day)} PARTITION OF log_entries
           FOR VALUES FROM ('${day.toISOString()}') TO ('${next.toISOString()}')`,
        )
        .catch((err: { code?: string }) => {
          // Another replica created it between our check and our create.
          if (err.code !== "42P07" && err.code !== "23505") throw err;
        });
    }
  }

  /** Drops every partition whose whole day is older than `retentionDays`; returns their names. */
  async dropExpired(retentionDays: number, now = new Date()): Promise<string[]> {
    this.#access.require("log.retain", "log");
    const cutoff = now.getTime() - retentionDays * DAY_MS;
    const { rows } = await this.#access.pool.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i
       JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
       WHERE p.relname = 'log_entries'`,
    );
    const dropped: string[] = [];
    for (const { name } of rows) {
      const m = PARTITION.exec(name);
      if (!m) continue;
      const end = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) + DAY_MS;
      if (end > cutoff) continue;
      await this.#access.pool.query(`DROP TABLE IF EXISTS ${name}`);
      dropped.push(name);
    }
    return dropped.sort();
  }
}
