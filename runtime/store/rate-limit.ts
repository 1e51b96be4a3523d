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
  points: number;
  durationSeconds: number;
}

export type Limiter = (key: string) => Promise<void>;

export function createLimiter(pool: pg.Pool, rule: RateLimitRule): Limiter {
  const limiter = new RateLimiterPostgres({
    storeClient: pool,
    tableName: "rate_limits",
    tableCreated: true,
    keyPrefix: rule.name,
    points: rule.points,
    duration: rule.durationSeconds,
    clearExpiredByTimeout: false,
    insuranceLimiter: new RateLimiterMemory({ points: rule.points, duration: rule.durationSeconds }),
  });
  return async (key: string) => {
    try {
      await limiter.consume(key);
    } catch (err) {
      if (err instanceof RateLimiterRes) {
        const retryAfter = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
        throw new RateLimited(rule.name, retryAfter);
      }
      throw err;
    }
  };
}
