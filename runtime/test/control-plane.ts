import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { type ControlPlane, type StartOptions, startControlPlane } from "../app/server.ts";
import { loadConfig } from "../platform/config.ts";
import { createLogger } from "../platform/logger.ts";
import { createTestDatabase } from "./database.ts";
import { TEST_SECRET_KEYS } from "./keys.ts";
import { ApiContract } from "./openapi.ts";
import { ScriptedDriver } from "./scripted-driver.ts";
import { waitFor } from "./wait.ts";

export interface TestControlPlane extends ControlPlane {
  localToken: string;
  driver: ScriptedDriver;
  /** fetch against the control plane; `token` becomes a Bearer header. */
  api(path: string, init?: RequestInit & { token?: string; json?: unknown }): Promise<Response>;
}

/** A real control plane on an ephemeral loopback port with its own database; closed after the file. */
export async function startTestControlPlane(
  env: Record<string, string> = {},
  options: StartOptions = {},
): Promise<TestControlPlane> {
  const { url: databaseUrl } = env.DATABASE_URL ? { url: env.DATABASE_URL } : await createTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), "berth-cp-"));
  const localToken = env.BERTH_LOCAL_TOKEN ?? randomBytes(32).toString("base64url");
  const config = loadConfig({
    BERTH_PORT: "0",
    BERTH_DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    BERTH_LOCAL_TOKEN: localToken,
    BERTH_SECRET_KEYS: TEST_SECRET_KEYS,
    // Scripted and fake agents never run a backup: a stop would wait out the budget. Backup tests set it.
    BERTH_BACKUP_PRE_STOP_SECONDS: "0",
    // Hosted mode refuses the local driver; these tests run a scripted one anyway.
    ...(env.CLERK_JWT_KEY || env.CLERK_SECRET_KEY ? { BERTH_DRIVER: "pulumi" } : {}),
    ...env,
  });
  // A test that passes its own driver (e.g. the local one) reads it from `deps.driver`.
  const driver = (options.driver as ScriptedDriver | undefined) ?? new ScriptedDriver();
  const cp = await startControlPlane(config, {
    logger: createLogger("silent"),
    runSchedules: false,
    agentHeartbeatSeconds: 1,
    ...options,
    driver,
    worker: { pollMs: 200, heartbeatMs: 500, backoffMs: () => 200, ...options.worker },
  });
  afterAll(async () => {
    await cp.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  let contract: Promise<ApiContract | null> | undefined;
  const api: TestControlPlane["api"] = async (path, init = {}) => {
    const headers = new Headers(init.headers);
    if (init.token) headers.set("authorization", `Bearer ${init.token}`);
    let body = init.body;
    if (init.json !== undefined) {
      headers.set("content-type", "application/json");
      body = JSON.stringify(init.json);
    }
    const res = await fetch(cp.url + path, { ...init, headers, body });
    // Every answer an e2e test reads through here is held to the served OpenAPI document.
    contract ??= fetch(`${cp.url}/api/v1/openapi.json`)
      .then(async (r) => (r.ok ? new ApiContract(await r.json()) : null))
      .catch(() => null);
    const problems = (await (await contract)?.checkResponse(init.method ?? "GET", path, res)) ?? [];
    if (problems.length)
      throw new Error(`response does not match the OpenAPI document:\n${problems.join("\n")}`);
    return res;
  };
  return { ...cp, localToken, driver, api };
}

// biome-ignore lint/suspicious/noExplicitAny: assertions inspect arbitrary JSON response shapes
export type JsonBody = any;

/** The parsed JSON body, typed loosely for assertions. */
export const json = (res: Response): Promise<JsonBody> => res.json();

/**
 * A new workspace whose box is this machine's loopback, where a test's dev servers listen: created
 * through the API, its start build waited for (it would overwrite the address), then its instance's
 * public address set to 127.0.0.1. Returns its id.
 */
export async function createLoopbackWorkspace(cp: TestControlPlane): Promise<string> {
  const { pool } = cp.deps.database;
  const created = await json(
    await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: {} }),
  );
  const workspaceId: string = created.workspace.id;
  await waitFor("the start build", async () => {
    const r = await pool.query(
      "SELECT 1 FROM workspace_builds WHERE workspace_id = $1 AND status = 'succeeded'",
      [workspaceId],
    );
    return r.rowCount === 1;
  });
  await pool.query(
    "UPDATE workspace_instances SET public_ip = '127.0.0.1' WHERE workspace_id = $1 AND stopped_at IS NULL",
    [workspaceId],
  );
  return workspaceId;
}
