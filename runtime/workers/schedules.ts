/**
 * Periodic jobs (reconcile now; metering, backups and health checks later) run through pg-boss schedules:
 * every replica registers the same schedule and a worker, and pg-boss creates one job per slot, so each
 * tick runs exactly once across replicas (DESIGN §8: no cron in every replica).
 */
import { PgBoss } from "pg-boss";
import type { Logger } from "../platform/logger.ts";

export interface ScheduledJob {
  name: string;
  /** Five-field cron, evaluated in UTC. */
  cron: string;
  run(): Promise<unknown>;
}

export interface Scheduler {
  stop(): Promise<void>;
}

export async function startSchedules(
  databaseUrl: string,
  log: Logger,
  jobs: ScheduledJob[],
): Promise<Scheduler> {
  const boss = new PgBoss({ connectionString: databaseUrl, max: 3, application_name: "berth-jobs" });
  boss.on("error", (err) => log.warn({ err }, "job system error"));
  await boss.start();
  for (const job of jobs) {
    await boss.createQueue(job.name);
    await boss.schedule(job.name, job.cron, null, { tz: "UTC" });
    await boss.work(job.name, async () => {
      const started = performance.now();
      await job.run();
      log.debug({ job: job.name, ms: Math.round(performance.now() - started) }, "scheduled job ran");
    });
  }
  return { stop: () => boss.stop({ graceful: true, timeout: 10_000 }) };
}
