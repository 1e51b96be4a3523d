/**
 * Text Postgres can store. A `text` column refuses U+0000 and `jsonb` also refuses unpaired UTF-16
 * surrogates, and either refusal fails the whole statement. Text that comes from outside (a box's pane
 * output, a length cap that cut an emoji in half) may hold both, so it passes through here first: each such
 * character becomes U+FFFD, which shows where something was replaced.
 */
export function pgText(text: string): string {
  const wellFormed = text.toWellFormed();
  return wellFormed.includes("\u0000") ? wellFormed.replaceAll("\u0000", "\ufffd") : wellFormed;
}

/** `pgText` over every string of a parsed JSON value, object keys included. */
export function pgSafe<T>(value: T): T {
  if (typeof value === "string") return pgText(value) as T;
  if (Array.isArray(value)) return value.map(pgSafe) as T;
  if (value && typeof value === "object" && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[pgText(k)] = pgSafe(v);
    return out as T;
  }
  return value;
}

/**
 * A figure from outside (a box's report) as a whole-number column holds it: rounded, or null (not reported)
 * above `max`, a bigint's safe range unless the column is smaller. A figure that did not fit would fail
 * its whole statement.
 */
export function pgWhole(v: number | undefined, max = Number.MAX_SAFE_INTEGER): number | null {
  if (v === undefined) return null;
  const whole = Math.round(v);
  return whole <= max ? whole : null;
}
