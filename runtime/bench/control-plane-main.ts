/**
 * A control plane in its own process for `npm run bench` (see child-process.ts for why). Started with
 * `spawnBenchControlPlane`; answers `heap`, `terminalSockets` and `cpuMs`, and on request starts a TCP
 * pipe (`pipeTo`) or a bare preview relay (`bareRelayTo`) inside the control plane's process.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LocalDriver } from "../../stacks/local/driver.ts";
import { AGENT_ENTRY } from "../app/drivers.ts";
import { type StartOptions, startControlPlane } from "../app/server.ts";
import { loadConfig } from "../platform/config.ts";
import { createLogger } from "../platform/logger.ts";
import { TEST_SECRET_KEYS } from "../test/keys.ts";
import { ScriptedDriver } from "../test/scripted-driver.ts";
import { startBareRelay } from "./bare-proxy.ts";
import { type BenchChild, forkBenchChild, serveParent } from "./child-process.ts";
import { cpuMs, startTcpPipe } from "./tcp-pipe.ts";

export interface BenchControlPlaneSpec {
  databaseUrl: string;
  env?: Record<string, string>;
  /** Serializable start options only: no driver, no logger. */
  options?: Pick<StartOptions, "agentHeartbeatSeconds" | "runBuilds" | "terminal">;
  /** A local driver with real box agents under this root; otherwise a scripted driver. */
  localRoot?: string;
  /** Also run a bare TCP pipe to this port in the control plane's process (tcp-pipe.ts); its port is ready.pipePort. */
  pipeUpstreamPort?: number;
}

export function spawnBenchControlPlane(
  spec: BenchControlPlaneSpec,
): Promise<BenchChild<{ url: string; pipePort: number | null }>> {
  return forkBenchChild(fileURLToPath(import.meta.url), { BERTH_BENCH_SPEC: JSON.stringify(spec) });
}

if (import.meta.main) {
  const spec = JSON.parse(process.env.BERTH_BENCH_SPEC!) as BenchControlPlaneSpec;
  const dataDir = mkdtempSync(join(tmpdir(), "berth-bench-cp-"));
  const config = loadConfig({
    DATABASE_URL: spec.databaseUrl,
    BERTH_PORT: "0",
    BERTH_DATA_DIR: dataDir,
    BERTH_SECRET_KEYS: TEST_SECRET_KEYS,
    BERTH_MAX_WORKSPACES_PER_USER: "1000",
    ...spec.env,
  });
  const driver = spec.localRoot
    ? new LocalDriver({
        root: spec.localRoot,
        agentEntry: AGENT_ENTRY,
        nodePath: process.execPath,
        agentEnv: { BERTH_TERMINAL: "builtin" },
      })
    : new ScriptedDriver();
  const cp = await startControlPlane(config, {
    driver,
    logger: createLogger("silent"),
    runSchedules: false,
    ...spec.options,
  });
  const pipe = spec.pipeUpstreamPort ? await startTcpPipe(spec.pipeUpstreamPort) : null;
  const morePipes: Array<Awaited<ReturnType<typeof startTcpPipe>>> = [];
  const bareRelays: Array<Awaited<ReturnType<typeof startBareRelay>>> = [];
  serveParent(
    { url: cp.url, pipePort: pipe?.port ?? null },
    {
      terminalSockets: () => cp.deps.terminal.socketCount,
      cpuMs,
      // `pipeTo:<port>`: one more bare pipe in this process, to a port known only once a box is up.
      pipeTo: async (port) => {
        const started = await startTcpPipe(Number(port));
        morePipes.push(started);
        return started.port;
      },
      // `bareRelayTo:<port>`: the preview proxy's byte relay without checks (bare-proxy.ts), in this process.
      bareRelayTo: async (port) => {
        const started = await startBareRelay(Number(port));
        bareRelays.push(started);
        return started.port;
      },
    },
    async () => {
      for (const p of [pipe, ...morePipes]) p?.server.close();
      for (const b of bareRelays) {
        b.relay.close();
        b.server.close();
      }
      await cp.close().finally(() => rmSync(dataDir, { recursive: true, force: true }));
    },
  );
}
