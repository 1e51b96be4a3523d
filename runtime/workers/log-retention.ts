/**
 * Keeps the central log store within `BERTH_LOG_RETENTION_DAYS`: creates the daily partitions ahead of
 * time and drops the ones whose whole day is past retention (store/logs.ts). Runs at start-up and hourly
 * (schedules); every replica may run it, each step is idempotent.
 */
import type { Logger } from "../platform/logger.ts";
import { SYSTEM } from "../store/actors.ts";
import type { Store } from "../store/store.ts";

export class LogRetention {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #retentionDays: number;

  constructor(options: { store: Store; log: Logger; retentionDays: number }) {
    this.#store = options.store;
    this.#log = options.log;
    this.#retentionDays = options.retentionDays;
  }

  /** Returns the partitions it dropped. */
  async tick(now = new Date()): Promise<string[]> {
    const logs = this.#store.as(SYSTEM.logs).logs;
    await logs.ensurePartitions(now);
    const dropped = await logs.dropExpired(this.#retentionDays, now);
    if (dropped.length)
      this.#log.info({ dropped, retentionDays: this.#retentionDays }, "dropped expired log partitions");
    return dropped;
  }
}
