/**
 * A second control-plane process for tests that kill a replica mid-build. Its driver hangs on every start,
 * so the build it claims stays running until the process dies. Usage: node replica-main.ts <DATABASE_URL>
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startControlPlane } from "../app/server.ts";
import { loadConfig } from "../platform/config.ts";
import { createLogger } from "../platform/logger.ts";
import { TEST_SECRET_KEYS } from "./keys.ts";
import { ScriptedDriver } from "./scripted-driver.ts";

const [databaseUrl, workerId = "doomed-replica"] = process.argv.slice(2);
const config = loadConfig({
  DATABASE_URL: databaseUrl,
  BERTH_PORT: "0",
  BERTH_DATA_DIR: mkdtempSync(join(tmpdir(), "berth-replica-")),
  BERTH_LOCAL_TOKEN: "replica-token-replica-token-replica-token",
  BERTH_SECRET_KEYS: TEST_SECRET_KEYS,
});
const driver = new ScriptedDriver().script("start", { kind: "hang" });
await startControlPlane(config, {
  driver,
  runSchedules: false,
  logger: createLogger("silent"),
  worker: { workerId, pollMs: 100, heartbeatMs: 200 },
});
process.stdout.write("listening\n");
