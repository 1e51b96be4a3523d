/** Chooses the workspace driver from configuration (BERTH_DRIVER). */
import type { WorkspaceDriver } from "../stacks/driver.ts";
import type { Config } from "./config.ts";
import type { Logger } from "./observability/logger.ts";

export async function createDriver(config: Config, _log: Logger): Promise<WorkspaceDriver> {
  throw new Error(`driver '${config.driver}' is not available in this build yet`);
}
