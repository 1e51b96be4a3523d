/**
 * The compute-minute meter (DESIGN §8). Minutes are not counted by a timer: each tick derives them from
 * the instances' running intervals, from each instance's `metered_through` cursor up to the last completed
 * minute, in one set-based statement (store/billing.ts `meterPass`, where the partial-minute rule is
 * written out). A control plane that was down catches up on its next tick with no gap; a tick that runs
 * twice, or on two replicas at once, writes nothing twice (the tick lock, and the unique key under it).
 */
import type { Logger } from "../platform/logger.ts";
import type { Metrics } from "../platform/metrics.ts";
import { SYSTEM } from "../store/actors.ts";
import type { BillingStore } from "../store/billing.ts";
import type { Store } from "../store/store.ts";

/** The clock a tick meters up to; null asks the database's clock (production: one clock for every replica). */
export type MeterClock = () => Date | null;

export interface MeterTickReport {
  /** False when another replica held the tick. */
  ran: boolean;
  inserted: number;
  /** Statements run (each pass is one transaction with one metering statement). */
  passes: number;
  ms: number;
}

/** One pass meters at most a day per instance, so catching up after a long outage stays in small transactions. */
const MAX_MINUTES_PER_PASS = 24 * 60;
/** A pass that still leaves minutes owed is repeated, up to this many times per tick (then the next tick goes on). */
const MAX_PASSES = 64;

export class MeterTicker {
  readonly #billing: BillingStore;
  readonly #clock: MeterClock;
  readonly #log: Logger;
  readonly #maxMinutesPerPass: number;
  readonly #metrics: Metrics | null;

  constructor(deps: {
    store: Store;
    log: Logger;
    clock?: MeterClock;
    maxMinutesPerPass?: number;
    metrics?: Metrics;
  }) {
    this.#metrics = deps.metrics ?? null;
    this.#billing = deps.store.as(SYSTEM.billing).billing;
    this.#clock = deps.clock ?? (() => null);
    this.#log = deps.log;
    this.#maxMinutesPerPass = deps.maxMinutesPerPass ?? MAX_MINUTES_PER_PASS;
  }

  async tick(): Promise<MeterTickReport> {
    const started = performance.now();
    const now = this.#clock();
    let inserted = 0;
    let passes = 0;
    for (;;) {
      const pass = await this.#billing.meterPass(now, this.#maxMinutesPerPass);
      passes++;
      if (!pass.ran) return { ran: false, inserted, passes, ms: performance.now() - started };
      inserted += pass.inserted;
      if (!pass.more || passes >= MAX_PASSES) break;
    }
    this.#metrics?.billingMinutesMetered.inc(inserted);
    if (inserted > 0) this.#log.debug({ inserted, passes }, "compute minutes metered");
    return { ran: true, inserted, passes, ms: performance.now() - started };
  }
}
