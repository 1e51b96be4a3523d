/**
 * BERTH_WORKERS > 1: `serve` becomes a supervisor that forks that many control-plane processes with
 * node:cluster. Each is a full replica (API, gateway, build worker, schedules); they already coordinate
 * through Postgres as separate hosts would (advisory-locked migrations and schedules, SKIP LOCKED build
 * claims, LISTEN/NOTIFY for route caches and notifications, push claims). Each binds BERTH_PORT itself
 * (`exclusive`) with SO_REUSEPORT, so the kernel spreads connections and no byte passes through the
 * supervisor. A worker that dies is replaced; SIGINT/SIGTERM stop them all.
 */
import cluster, { type Worker } from "node:cluster";
import type { Logger } from "../platform/logger.ts";

/** A worker that keeps dying is not restarted in a tight loop. */
const RESTART_DELAY_MS = 1_000;

export function isClusterWorker(): boolean {
  return cluster.isWorker;
}

/** The only process, or the supervisor's first worker: where once-per-host output (the login link) goes. */
export function isFirstWorker(): boolean {
  return !cluster.isWorker || cluster.worker?.id === 1;
}

/** In the supervisor: runs `count` workers until SIGINT/SIGTERM, then stops them and resolves. */
export async function superviseWorkers(count: number, log: Logger): Promise<number> {
  let stopping = false;
  const fork = (): Worker => cluster.fork();
  cluster.on("exit", (worker, code, signal) => {
    if (stopping) return;
    log.warn({ pid: worker.process.pid, code, signal }, "control-plane worker exited; starting another");
    setTimeout(() => {
      if (!stopping) fork();
    }, RESTART_DELAY_MS);
  });
  for (let i = 0; i < count; i++) fork();
  log.info({ workers: count }, "control-plane workers started");
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  stopping = true;
  log.info("stopping control-plane workers");
  const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.isDead()) return resolve();
          w.once("exit", () => resolve());
          w.process.kill("SIGTERM");
        }),
    ),
  );
  return 0;
}
