import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, inject } from "vitest";
import { connectDatabase, type Database } from "../store/client.ts";
import { withDatabase } from "./global-setup.ts";

export interface TestDatabase {
  url: string;
  name: string;
}

/**
 * A fresh database for this test file, cloned from the migrated template and dropped after the file.
 * The name carries the run's pid so a later run can collect databases a crashed run left behind.
 */
export async function createTestDatabase(options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const adminUrl = inject("pgAdminUrl");
  const name = `berth_test_${inject("testRunId")}_${randomBytes(5).toString("hex")}`;
  const admin = new pg.Client(adminUrl);
  await admin.connect();
  try {
    const template = options.migrated === false ? "template0" : inject("pgTemplate");
    await admin.query(`CREATE DATABASE "${name}" TEMPLATE "${template}" STRATEGY FILE_COPY`);
  } finally {
    await admin.end();
  }
  afterAll(async () => {
    const c = new pg.Client(adminUrl);
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).finally(() => c.end());
  });
  return { url: withDatabase(adminUrl, name), name };
}

/** A migrated database plus a connection to it, closed after the file. */
export async function useDatabase(): Promise<Database & TestDatabase> {
  const tdb = await createTestDatabase();
  const database = connectDatabase(tdb.url, { max: 4 });
  afterAll(() => database.close());
  return { ...database, ...tdb };
}
