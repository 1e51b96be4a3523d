/**
 * Rate limits stored in Postgres (shared by all replicas), with an in-memory limiter as insurance when the
 * database is unavailable.
 */
import type pg from "pg";
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRes } from "rate-limiter-flexible";
import { RateLimited } from "../platform/errors.ts";

export interface RateLimitRule {
  /** Distinguishes limiters sharing the table, e.g. `login`. */
  name: string;
  /** Points per key per window. */
  points: number;
  durationSeconds: number;
  /** Also a budget for all keys together per window (a spread-out attack). */
  globalPoints?: number;
  /**
   * Backoff: a key that uses up its budget is blocked for the window, and each further time within a day
   * for twice as long as before, up to this many seconds. Unset: no backoff, the window just runs out.
   */
  maxBlockSeconds?: number;
}

/** Charges one point to `key`; throws RateLimited (with when to retry) when over a budget. */
export type Limiter = (key: string) => Promise<void>;

const GLOBAL_KEY = "*";

export function createLimiter(pool: pg.Pool, rule: RateLimitRule): Limiter {
  const make = (keyPrefix: string, points: number, duration: number) =>
    new RateLimiterPostgres({
      storeClient: pool,
      // Said, not guessed from the constructor's name: the pool is a subclass (client.ts, query spans).
      storeType: "pool",
      tableName: "rate_limits",
      tableCreated: true,
      keyPrefix,
      points,
      duration,
      clearExpiredByTimeout: false,
      insuranceLimiter: new RateLimiterMemory({ points, duration }),
    });
  const budgets = [
    { limiter: make(rule.name, rule.points, rule.durationSeconds), points: rule.points, global: false },
  ];
  if (rule.globalPoints) {
    budgets.push({
      limiter: make(`${rule.name}:all`, rule.globalPoints, rule.durationSeconds),
      points: rule.globalPoints,
      global: true,
    });
  }
  // How many times each key was blocked in the last day: the exponent of its next block.
  const strikes = rule.maxBlockSeconds ? make(`${rule.name}:strikes`, 1_000_000, 24 * 3600) : null;

  return async (key: string) => {
    for (const { limiter, points, global } of budgets) {
      const k = global ? GLOBAL_KEY : key;
      try {
        await limiter.consume(k);
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) throw err;
        let retryMs = err.msBeforeNext;
        // The attempt that crossed the budget sets the block; later ones only see it.
        if (strikes && rule.maxBlockSeconds && err.consumedPoints === points + 1) {
          const n = (await strikes.consume(`${global ? "all" : "key"}:${k}`)).consumedPoints;
          const seconds = Math.min(rule.maxBlockSeconds, rule.durationSeconds * 2 ** (n - 1));
          await limiter.block(k, seconds);
          retryMs = seconds * 1000;
        }
        throw new RateLimited(rule.name, Math.max(1, Math.ceil(retryMs / 1000)));
      }
    }
  };
}
