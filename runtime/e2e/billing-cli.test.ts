/** `berth billing` as a child process against a real database: help, a user's usage, a plan change. */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { createLogger } from "../platform/logger.ts";
import { users } from "../store/schema.ts";
import { insertInstance, replicaStore } from "../test/billing.ts";
import { createTestDatabase } from "../test/database.ts";
import { insertWorkspace } from "../test/fixtures.ts";
import { TEST_SECRET_KEYS } from "../test/keys.ts";
import { MeterTicker } from "../workers/metering.ts";

// Each run loads the whole control plane: tens of seconds on a busy two-core machine, so few runs.
describe("berth billing", { timeout: 300_000 }, async () => {
  const cli = fileURLToPath(new URL("../app/cli.ts", import.meta.url));
  const { url } = await createTestDatabase();
  const env = {
    DATABASE_URL: url,
    BERTH_SECRET_KEYS: TEST_SECRET_KEYS,
    BERTH_LOG_LEVEL: "error",
    BERTH_BILLING_PLANS: JSON.stringify({
      free: { includedMinutes: 100, overage: "stop" },
      pro: { includedMinutes: null, overage: "billed" },
    }),
  };
  const run = (args: string[]) =>
    spawnSync(process.execPath, [cli, "billing", ...args], {
      env: { ...process.env, ...env },
      encoding: "utf8",
      timeout: 60_000,
    });

  it("explains itself with --help, and refuses an incomplete command", () => {
    const help = run(["--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("usage <user>");
    expect(run(["plan", "someone", "gold"]).stderr).toContain("no plan named 'gold'");
  });

  it("prints a user's usage and moves them to another plan", async () => {
    const { store, database } = replicaStore(url, "billing-cli");
    try {
      const [user] = await database.db
        .insert(users)
        .values({ externalId: "user_cli", email: "cli@example.com" })
        .returning();
      const ws = await insertWorkspace(database.db, user!.id, { name: "box" });
      const start = new Date();
      start.setUTCDate(1);
      start.setUTCHours(0, 0, 0, 0);
      await insertInstance(database.pool, ws.id, start, new Date(start.getTime() + 42 * 60_000));
      await new MeterTicker({ store, log: createLogger("silent") }).tick();
    } finally {
      await database.close();
    }
    const usage = run(["usage", "cli@example.com"]);
    expect(usage.status).toBe(0);
    expect(usage.stdout).toMatch(/plan\s+free/);
    expect(usage.stdout).toMatch(/minutes\s+42 of 100; remaining 58/);
    const moved = run(["plan", "user_cli", "pro"]);
    expect(moved.status).toBe(0);
    expect(moved.stdout).toMatch(/plan\s+pro/);
    expect(moved.stdout).toMatch(/minutes\s+42 of unlimited/);
  });
});
