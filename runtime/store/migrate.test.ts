import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createTestDatabase, useDatabase } from "../test/database.ts";
import { insertWorkspace } from "../test/fixtures.ts";
import { connectDatabase } from "./client.ts";
import { runMigrations } from "./migrate.ts";
import { users } from "./schema.ts";

describe("migrations", () => {
  it("apply to an empty database, and a second run changes nothing", async () => {
    const { url } = await createTestDatabase({ migrated: false });
    const database = connectDatabase(url, { max: 2 });
    try {
      await runMigrations(database);
      const tables = async () =>
        (
          await database.pool.query<{ tablename: string }>(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
          )
        ).rows.map((r) => r.tablename);
      const first = await tables();
      expect(first).toEqual(
        expect.arrayContaining([
          "users",
          "workspaces",
          "workspace_volumes",
          "workspace_instances",
          "workspace_builds",
          "workspace_build_logs",
          "sessions",
          "previews",
          "notifications",
          "meter_events",
          "voice_usage",
          "backups",
          "workspace_secrets",
          "audit_log",
          "rate_limits",
        ]),
      );
      await runMigrations(database);
      expect(await tables()).toEqual(first);
      const applied = await database.pool.query(
        "SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations",
      );
      expect(applied.rows[0].n).toBeGreaterThan(0);
    } finally {
      await database.close();
    }
  });

  it("serialize when two replicas migrate at once", async () => {
    const { url } = await createTestDatabase({ migrated: false });
    const a = connectDatabase(url, { max: 2 });
    const b = connectDatabase(url, { max: 2 });
    try {
      await Promise.all([runMigrations(a), runMigrations(b)]);
      const applied = await a.pool.query("SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations");
      const files = await a.pool.query(
        "SELECT count(DISTINCT hash)::int AS n FROM drizzle.__drizzle_migrations",
      );
      expect(applied.rows[0].n).toBe(files.rows[0].n);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe("schema constraints", async () => {
  const { db, pool } = await useDatabase();
  const [owner] = await db.insert(users).values({ externalId: "user_constraints" }).returning();
  const ws = await insertWorkspace(db, owner!.id);
  const wsId = ws!.id;

  const rejects = async (statement: string, params: unknown[], constraint: string) => {
    await expect(pool.query(statement, params)).rejects.toMatchObject({ constraint });
  };

  it("reject an unknown workspace state", async () => {
    await rejects("UPDATE workspaces SET state = 'bogus' WHERE id = $1", [wsId], "workspaces_state_check");
  });

  it("reject a session name tmux could execute", async () => {
    await rejects(
      "INSERT INTO sessions (workspace_id, name) VALUES ($1, $2)",
      [wsId, "x#(touch /tmp/pwned)"],
      "sessions_name_check",
    );
    await rejects(
      "INSERT INTO sessions (workspace_id, name) VALUES ($1, $2)",
      [wsId, "A".repeat(3)],
      "sessions_name_check",
    );
  });

  it("allow one open session per name, reusable once closed", async () => {
    await pool.query("INSERT INTO sessions (workspace_id, name) VALUES ($1, 'main')", [wsId]);
    await rejects(
      "INSERT INTO sessions (workspace_id, name) VALUES ($1, 'main')",
      [wsId],
      "sessions_open_name_uniq",
    );
    await pool.query("UPDATE sessions SET closed_at = now() WHERE workspace_id = $1 AND name = 'main'", [
      wsId,
    ]);
    await pool.query("INSERT INTO sessions (workspace_id, name) VALUES ($1, 'main')", [wsId]);
  });

  it("keep at most one open instance per workspace", async () => {
    await pool.query("INSERT INTO workspace_instances (workspace_id, agent_token_hash) VALUES ($1, 'h1')", [
      wsId,
    ]);
    await rejects(
      "INSERT INTO workspace_instances (workspace_id, agent_token_hash) VALUES ($1, 'h2')",
      [wsId],
      "workspace_instances_open_uniq",
    );
  });

  it("make metering a minute twice impossible, and only whole minutes valid", async () => {
    const { rows } = await pool.query("SELECT id FROM workspace_instances WHERE workspace_id = $1", [wsId]);
    const instance = rows[0].id;
    await pool.query(
      "INSERT INTO meter_events (workspace_instance_id, minute_ts) VALUES ($1, '2026-11-23T10:00:00Z')",
      [instance],
    );
    await rejects(
      "INSERT INTO meter_events (workspace_instance_id, minute_ts) VALUES ($1, '2026-11-23T10:00:00Z')",
      [instance],
      "meter_events_minute_uniq",
    );
    await rejects(
      "INSERT INTO meter_events (workspace_instance_id, minute_ts) VALUES ($1, '2026-11-23T10:00:30Z')",
      [instance],
      "meter_events_minute_check",
    );
  });

  it("reject builds whose status and finish time disagree, and unknown transitions", async () => {
    await rejects(
      "INSERT INTO workspace_builds (workspace_id, number, transition, reason, status) VALUES ($1, 1, 'start', 'user', 'succeeded')",
      [wsId],
      "workspace_builds_finished_check",
    );
    await rejects(
      "INSERT INTO workspace_builds (workspace_id, number, transition, reason) VALUES ($1, 1, 'explode', 'user')",
      [wsId],
      "workspace_builds_transition_check",
    );
  });

  it("reject preview ports outside 1-65535 and unknown share levels", async () => {
    await rejects(
      "INSERT INTO previews (workspace_id, port, source) VALUES ($1, 70000, 'declared')",
      [wsId],
      "previews_port_check",
    );
    await rejects(
      "INSERT INTO previews (workspace_id, port, source, share) VALUES ($1, 3000, 'declared', 'public')",
      [wsId],
      "previews_share_check",
    );
  });

  it("reject rows pointing at missing parents", async () => {
    await rejects(
      "INSERT INTO sessions (workspace_id, name) VALUES ('00000000-0000-0000-0000-000000000000', 'orphan')",
      [],
      "sessions_workspace_id_workspaces_id_fk",
    );
  });

  it("reject an out-of-range volume size", async () => {
    await expect(
      db.execute(sql`UPDATE workspaces SET volume_size_gb = 1 WHERE id = ${wsId}`),
    ).rejects.toMatchObject({
      cause: expect.objectContaining({ constraint: "workspaces_volume_size_check" }),
    });
  });
});
