/**
 * Waiting on a condition instead of sleeping: the box's tests hold on a loaded two-core machine only if
 * they wait for what they need (a file, a heartbeat, a marker in the output), never for a fixed time.
 * The control plane's tests have the same helper in runtime/test/wait.ts.
 */
export async function waitUntil<T>(
  probe: () => T | Promise<T>,
  what: string,
  timeoutMs = 30_000,
  intervalMs = 25,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`,
      );
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
