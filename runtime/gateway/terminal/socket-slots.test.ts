/**
 * The per-session socket cap across replicas: two SocketSlots on one real Postgres stand for two
 * control-plane processes (each holds its own replica id and its own connections).
 */
import { describe, expect, it } from "vitest";
import { connectDatabase } from "../../store/client.ts";
import { sessions, users } from "../../store/schema.ts";
import { SocketSlots } from "../../store/terminal-sockets.ts";
import { useDatabase } from "../../test/database.ts";
import { insertWorkspace } from "../../test/fixtures.ts";

describe("terminal socket slots", async () => {
  const database = await useDatabase();
  const { db, pool } = database;
  const [owner] = await db.insert(users).values({ externalId: "user_slots" }).returning();
  const ws = await insertWorkspace(db, owner!.id);
  let n = 0;
  const newSession = async () => {
    const [s] = await db
      .insert(sessions)
      .values({ workspaceId: ws.id, name: `s${++n}`, createdById: owner!.id })
      .returning();
    return s!.id;
  };
  const errors: unknown[] = [];
  const options = { staleAfterMs: 60_000, onError: (err: unknown) => errors.push(err) };
  // A second replica: its own pool, as a second process would have.
  const other = connectDatabase(database.url, { max: 4 });
  const a = new SocketSlots(pool, options);
  const b = new SocketSlots(other.pool, options);

  it("holds the cap across replicas, also when they race for the last slots", async () => {
    const session = await newSession();
    const attempts = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).reserve(session, 8)),
    );
    const granted = attempts.filter((s) => s !== null);
    expect(granted).toHaveLength(8);
    expect(a.held + b.held).toBe(8);
    const { rows } = await pool.query(
      "SELECT count(*)::int AS n FROM terminal_sockets WHERE session_id = $1",
      [session],
    );
    expect(rows[0].n).toBe(8);
    // Another session has its own budget.
    expect(await b.reserve(await newSession(), 8)).not.toBeNull();
  });

  it("frees a slot on release, for any replica to take", async () => {
    const session = await newSession();
    const first = (await a.reserve(session, 1))!;
    expect(await b.reserve(session, 1)).toBeNull();
    first.release();
    first.release(); // twice is harmless
    await a.drain();
    expect(await b.reserve(session, 1)).not.toBeNull();
  });

  it("stops counting a dead replica's slots once they go stale, and keeps refreshed ones", async () => {
    const session = await newSession();
    const live = (await a.reserve(session, 2))!;
    const dead = (await b.reserve(session, 2))!;
    expect(await a.reserve(session, 2)).toBeNull();
    // Replica b dies: its row is never refreshed again. Replica a refreshes its own.
    await pool.query("UPDATE terminal_sockets SET seen_at = now() - interval '10 minutes'");
    await a.refresh();
    const taken = await a.reserve(session, 2);
    expect(taken).not.toBeNull();
    const { rows } = await pool.query("SELECT id FROM terminal_sockets WHERE session_id = $1 ORDER BY id", [
      session,
    ]);
    expect(rows.map((r) => r.id).sort()).toEqual([live.id, taken!.id].sort());
    expect(rows.map((r) => r.id)).not.toContain(dead.id);
  });

  it("drops stale rows of every session on refresh, and a stopping replica's rows on drain", async () => {
    const forgotten = await newSession();
    await b.reserve(forgotten, 2);
    await pool.query(
      "UPDATE terminal_sockets SET seen_at = now() - interval '10 minutes' WHERE session_id = $1",
      [forgotten],
    );
    await a.refresh();
    const left = await pool.query("SELECT count(*)::int AS n FROM terminal_sockets WHERE session_id = $1", [
      forgotten,
    ]);
    expect(left.rows[0].n).toBe(0);
    // A replica stopping with sockets whose close has not run yet: drain removes what it still holds.
    const stopping = new SocketSlots(pool, options);
    const session = await newSession();
    await stopping.reserve(session, 3);
    await stopping.reserve(session, 3);
    await stopping.drain();
    const after = await pool.query("SELECT count(*)::int AS n FROM terminal_sockets WHERE replica_id = $1", [
      stopping.replicaId,
    ]);
    expect(after.rows[0].n).toBe(0);
  });

  it("leaves no rows behind once every socket closed and releases drained", async () => {
    const session = await newSession();
    const slots = await Promise.all([a.reserve(session, 3), b.reserve(session, 3)]);
    for (const s of slots) s!.release();
    await Promise.all([a.drain(), b.drain()]);
    const { rows } = await pool.query(
      "SELECT count(*)::int AS n FROM terminal_sockets WHERE session_id = $1",
      [session],
    );
    expect(rows[0].n).toBe(0);
    expect(errors).toEqual([]);
    await other.close();
  });
});
