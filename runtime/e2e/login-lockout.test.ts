/**
 * Local login cannot be used to lock the owner out: wrong tokens are limited (per source, overall, with
 * backoff), the right token always signs in.
 */
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { RateLimited } from "../platform/errors.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";

describe("local login under a flood of wrong tokens", async () => {
  const cp = await startTestControlPlane();
  const login = (token: string) => cp.api("/api/v1/auth/login", { method: "POST", json: { token } });

  it("answers 401 then 429 to wrong tokens, and 200 to the right one", async () => {
    const statuses: number[] = [];
    let lastLimited: Response | null = null;
    for (let i = 0; i < 20; i++) {
      const res = await login(`wrong-${i}`);
      statuses.push(res.status);
      if (res.status === 429) lastLimited = res;
    }
    expect(statuses).toEqual([...Array(10).fill(401), ...Array(10).fill(429)]);
    // The 429 names when to retry: the first block lasts the whole window (15 minutes).
    const retryAfter = Number(lastLimited!.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(800);
    expect(retryAfter).toBeLessThanOrEqual(900);
    expect((await json(lastLimited!)).error.message).toMatch(/retry in \d+s/);

    const ok = await login(cp.localToken);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("set-cookie")).toMatch(/berth_session=/);
  });

  it("limits all sources together, and doubles a key's block each time it is blocked again", async () => {
    const name = `t-${randomUUID().slice(0, 8)}`;
    const limiter = cp.deps.store.rateLimiter({
      name,
      points: 2,
      durationSeconds: 1,
      globalPoints: 5,
      maxBlockSeconds: 3,
    });
    const retryOf = async (key: string) => {
      try {
        await limiter(key);
        return 0;
      } catch (err) {
        expect(err).toBeInstanceOf(RateLimited);
        return (err as RateLimited).retryAfterSeconds;
      }
    };
    // Source a: two failures pass, the third is blocked for the window (1 s).
    expect([await retryOf("a"), await retryOf("a"), await retryOf("a")]).toEqual([0, 0, 1]);
    // After the block, the next crossing blocks for twice as long (2 s), then the cap (3 s).
    await new Promise((r) => setTimeout(r, 1_100));
    expect([await retryOf("a"), await retryOf("a"), await retryOf("a")]).toEqual([0, 0, 2]);
    await new Promise((r) => setTimeout(r, 2_100));
    expect([await retryOf("a"), await retryOf("a"), await retryOf("a")]).toEqual([0, 0, 3]);

    // Overall: spread over many sources, the global budget (5 per window) still ends it.
    const other = cp.deps.store.rateLimiter({
      name: `${name}g`,
      points: 100,
      durationSeconds: 60,
      globalPoints: 5,
    });
    const results: boolean[] = [];
    for (let i = 0; i < 7; i++)
      results.push(
        await other(`source-${i}`).then(
          () => true,
          () => false,
        ),
      );
    expect(results).toEqual([true, true, true, true, true, false, false]);
  });
});
