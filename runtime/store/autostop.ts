/**
 * Idle autostop's reads and writes (`system:autostop`, runtime/workers/autostop.ts), each one statement over
 * every workspace at once, so a tick costs the same few queries whether there are ten workspaces or ten
 * thousand. Times come from the caller (an injectable clock), never from the database's now().
 *
 * A workspace is idle since the latest of: its last activity (terminal input and meaningful output from the
 * relay, preview traffic, Claude state changes, "keep running"), and its last state change (a box that just
 * woke is not idle). It is protected while one of its sessions' Claude is `working`, unless nothing at all
 * has happened for `workingCapMs` (an unattended Claude that never ends its turn).
 */

import { type SQL, sql } from "drizzle-orm";
import type { Access } from "./access.ts";
import { NOTIFICATION_CHANNEL } from "./channels.ts";

export interface AutostopTimes {
  now: Date;
  /** How long before the stop the owner is warned (at most half the workspace's timeout). */
  warnLeadMs: number;
  /** A working Claude protects its workspace for at most this long without any activity. */
  workingCapMs: number;
}

/** `idle_since`, timeout, warning lead and `protected` for workspace `w`, as SQL shared by the statements below. */
const IDLE_SINCE = "GREATEST(w.last_activity_at, w.state_changed_at)";
const TIMEOUT = "(w.idle_timeout_minutes * interval '1 minute')";
const LEAD = "LEAST($2::bigint * interval '1 millisecond', w.idle_timeout_minutes * interval '30 seconds')";
/** With parameters ($1 now, $2 lead, $3 cap). */
const PROTECTED = `(EXISTS (SELECT 1 FROM sessions s
    WHERE s.workspace_id = w.id AND s.closed_at IS NULL AND s.claude_state = 'working')
  AND ${IDLE_SINCE} > $1::timestamptz - $3::bigint * interval '1 millisecond')`;
/** Warned at least the lead time ago, idle past its timeout and not protected (same parameters). */
const DUE = `w.state = 'ready' AND w.idle_timeout_minutes IS NOT NULL
  AND w.autostop_warned_at IS NOT NULL AND w.autostop_warned_at + ${LEAD} <= $1::timestamptz
  AND ${IDLE_SINCE} + ${TIMEOUT} <= $1::timestamptz
  AND NOT ${PROTECTED}`;

/** `text` with its $1, $2… bound to `values`, for the executor of a transaction (access.db). */
function bound(text: string, values: unknown[]): SQL {
  return sql.join(
    text.split(/\$(\d+)/).map((part, i) => (i % 2 ? sql`${values[Number(part) - 1]}` : sql.raw(part))),
  );
}

export class AutostopStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /**
   * Forgets warnings that no longer hold: activity that moved the stop past the warning's lead (activity
   * since the warning, or from just before it and written after it: the relay writes every 30 s), a working
   * Claude, a workspace that is no longer ready or whose autostop was turned off. Returns how many.
   */
  async clearStaleWarnings(t: AutostopTimes): Promise<number> {
    this.#access.require("workspace.autostop", "workspace");
    const r = await this.#access.pool.query(
      `UPDATE workspaces w SET autostop_warned_at = NULL
        WHERE w.autostop_warned_at IS NOT NULL
          AND (w.state <> 'ready' OR w.idle_timeout_minutes IS NULL
               OR ${IDLE_SINCE} + ${TIMEOUT} - ${LEAD} > w.autostop_warned_at OR ${PROTECTED})`,
      [t.now.toISOString(), t.warnLeadMs, t.workingCapMs],
    );
    return r.rowCount ?? 0;
  }

  /**
   * Warns the owners of workspaces that will stop within the lead time: marks them warned and stores an
   * `autostop_warning` notification for each (announced like any other). Returns the warned workspaces.
   */
  async warn(t: AutostopTimes): Promise<Array<{ workspaceId: string; notificationId: string }>> {
    this.#access.require("workspace.autostop", "workspace");
    const { rows } = await this.#access.pool.query<{ workspace_id: string; notification_id: string }>(
      `WITH due AS (
         SELECT w.id, w.owner_id, w.name, ${IDLE_SINCE} + ${TIMEOUT} AS stop_at
           FROM workspaces w
          WHERE w.state = 'ready' AND w.idle_timeout_minutes IS NOT NULL AND w.autostop_warned_at IS NULL
            AND ${IDLE_SINCE} + ${TIMEOUT} - ${LEAD} <= $1::timestamptz
            AND NOT ${PROTECTED}
          FOR UPDATE OF w SKIP LOCKED),
       marked AS (
         UPDATE workspaces w SET autostop_warned_at = $1::timestamptz FROM due WHERE w.id = due.id
         RETURNING w.id),
       stored AS (
         INSERT INTO notifications (user_id, workspace_id, kind, title, body, dedupe_key, created_at, push)
         SELECT due.owner_id, due.id, 'autostop_warning',
                'Idle: ' || due.name || ' hibernates soon',
                'Nothing has happened in it for a while. Keep it running, or let it hibernate (your files stay).',
                'autostop:' || due.id || ':' || extract(epoch FROM $1::timestamptz)::bigint, $1::timestamptz, true
           FROM due JOIN marked ON marked.id = due.id
         ON CONFLICT (workspace_id, dedupe_key) DO NOTHING
         RETURNING id, user_id, workspace_id)
       SELECT workspace_id, id AS notification_id, pg_notify('${NOTIFICATION_CHANNEL}', user_id || ':' || id)
         FROM stored`,
      [t.now.toISOString(), t.warnLeadMs, t.workingCapMs],
    );
    return rows.map((r) => ({ workspaceId: r.workspace_id, notificationId: r.notification_id }));
  }

  /** Workspaces warned at least the lead time ago, idle past their timeout and not protected: to stop. */
  async dueToStop(t: AutostopTimes): Promise<string[]> {
    this.#access.require("workspace.autostop", "workspace");
    const { rows } = await this.#access.pool.query<{ id: string }>(
      `SELECT w.id FROM workspaces w WHERE ${DUE}`,
      [t.now.toISOString(), t.warnLeadMs, t.workingCapMs],
    );
    return rows.map((r) => r.id);
  }

  /**
   * In the transaction that hibernates it: locks the workspace's row, then reads again whether it is due.
   * `dueToStop` was read before; "keep running", terminal activity or a Claude state change that committed
   * since (each an update of the row, which the lock waits for) must leave the workspace running.
   */
  async stillDue(t: AutostopTimes, workspaceId: string): Promise<boolean> {
    this.#access.require("workspace.autostop", "workspace");
    await this.#access.db.execute(sql`SELECT 1 FROM workspaces WHERE id = ${workspaceId} FOR UPDATE`);
    const { rows } = await this.#access.db.execute(
      bound(`SELECT 1 FROM workspaces w WHERE w.id = $4::uuid AND ${DUE}`, [
        t.now.toISOString(),
        t.warnLeadMs,
        t.workingCapMs,
        workspaceId,
      ]),
    );
    return rows.length > 0;
  }
}
