/**
 * The per-session cap on open terminals, counted across every control-plane replica through
 * `terminal_sockets`. A reservation is one short transaction: a transaction-scoped advisory lock on the
 * session serialises concurrent reservations (on any replica), stale rows of a dead replica are dropped,
 * and the row is inserted only while the live count is below the cap. The replica keeps its rows fresh
 * while their sockets are open (`refresh()`, from the gateway's sweep) and deletes each on close.
 *
 * A slot counts sockets, it holds no one's data: the relay reserves one only after the authorization layer
 * let the user open the session, so the store hands these out (Store.socketSlots) without an actor.
 */
import { randomUUID } from "node:crypto";
import type pg from "pg";

export interface SocketSlot {
  readonly id: string;
  /** Frees the slot; safe to call more than once. */
  release(): void;
}

export interface SocketSlotOptions {
  /** A row not refreshed for this long belongs to a replica that died: it no longer counts. */
  staleAfterMs: number;
  /** Called when a release or refresh fails (the row then expires by staleness). */
  onError(err: unknown, what: "release" | "refresh"): void;
}

export class SocketSlots {
  /** This process's identity in `terminal_sockets`; a restarted replica is a new one. */
  readonly replicaId = randomUUID();
  readonly #pool: pg.Pool;
  readonly #options: SocketSlotOptions;
  readonly #open = new Set<string>();
  readonly #releasing = new Set<Promise<unknown>>();

  constructor(pool: pg.Pool, options: SocketSlotOptions) {
    this.#pool = pool;
    this.#options = options;
  }

  /** Slots held by this replica right now. */
  get held(): number {
    return this.#open.size;
  }

  /** A slot for one more socket on `sessionId`, or null when `max` live sockets are already open. */
  async reserve(sessionId: string, max: number): Promise<SocketSlot | null> {
    const id = randomUUID();
    const client = await this.#pool.connect();
    let reserved: boolean;
    try {
      await client.query("BEGIN");
      await client.query("SELECT pg_advisory_xact_lock(hashtextextended('terminal_sockets:' || $1, 0))", [
        sessionId,
      ]);
      await client.query(
        "DELETE FROM terminal_sockets WHERE session_id = $1 AND seen_at < now() - make_interval(secs => $2)",
        [sessionId, this.#options.staleAfterMs / 1000],
      );
      const { rows } = await client.query<{ inserted: boolean }>(
        `WITH live AS (SELECT count(*) AS n FROM terminal_sockets WHERE session_id = $2)
         INSERT INTO terminal_sockets (id, session_id, replica_id)
         SELECT $1, $2, $3 FROM live WHERE live.n < $4
         RETURNING true AS inserted`,
        [id, sessionId, this.replicaId, max],
      );
      await client.query("COMMIT");
      reserved = rows.length === 1;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      // A connection that failed mid-transaction is not handed back to the pool.
      client.release(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
    client.release();
    if (!reserved) return null;
    this.#open.add(id);
    let released = false;
    return {
      id,
      release: () => {
        if (released) return;
        released = true;
        this.#open.delete(id);
        const done = this.#pool
          .query("DELETE FROM terminal_sockets WHERE id = $1", [id])
          .catch((err: unknown) => this.#options.onError(err, "release"))
          .finally(() => this.#releasing.delete(done));
        this.#releasing.add(done);
      },
    };
  }

  /**
   * Marks this replica's open slots as alive, and drops every replica's stale rows (a session nobody
   * reopens would otherwise keep a dead replica's rows forever).
   */
  async refresh(): Promise<void> {
    await this.#pool
      .query(
        `WITH alive AS (UPDATE terminal_sockets SET seen_at = now() WHERE id = ANY($1::uuid[]))
         DELETE FROM terminal_sockets
          WHERE seen_at < now() - make_interval(secs => $2) AND NOT (id = ANY($1::uuid[]))`,
        [[...this.#open], this.#options.staleAfterMs / 1000],
      )
      .catch((err: unknown) => this.#options.onError(err, "refresh"));
  }

  /**
   * At shutdown: waits for pending releases, then deletes whatever this replica still holds (sockets
   * terminated a moment ago whose close events have not run yet), so it leaves no rows behind.
   */
  async drain(): Promise<void> {
    while (this.#releasing.size > 0) await Promise.all([...this.#releasing]);
    this.#open.clear();
    await this.#pool
      .query("DELETE FROM terminal_sockets WHERE replica_id = $1", [this.replicaId])
      .catch((err: unknown) => this.#options.onError(err, "release"));
  }
}
