/**
 * Clients never learn a box's address (DESIGN §1). Driver output (build logs, errors) is written by tools
 * that do not know that rule, so text shown to clients passes through this first.
 */
import { isIP } from "node:net";

// Candidates only; `isIP` decides, so times like 12:30:01 and versions like 1.2.3 survive.
const CANDIDATE = /[0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]*/g;

export function redactAddresses(text: string): string {
  return text.replace(CANDIDATE, (m) => {
    const core = m.replace(/\.+$/, ""); // a sentence's full stop is not part of the address
    return isIP(core) ? `[address]${m.slice(core.length)}` : m;
  });
}

/**
 * Secret-shaped values, for text that is stored or shipped (the central log store): whatever wrote the
 * line may not have known it held a credential. Each pattern keeps what names the value and replaces the
 * value itself.
 */
const SECRET_PATTERNS: Array<[RegExp, string]> = [
  // `Authorization: Bearer …`
  [/\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]{8,}/gi, "$1$2[redacted]"],
  // JSON web tokens: three base64url parts, the first two JSON objects
  [/\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+/g, "[redacted-jwt]"],
  // Stripe, Anthropic, OpenAI and similar prefixed keys
  [/\b(sk|rk|pk)[_-](live|test|ant|proj)?[_-]?[A-Za-z0-9_-]{16,}/g, "[redacted-key]"],
  [/\bwhsec_[A-Za-z0-9]{16,}/g, "[redacted-key]"],
  // Berth's own personal API tokens (runtime/domain/identity/api-tokens.ts)
  [/\bberth_pat_[A-Za-z0-9_-]{16,}/g, "[redacted-token]"],
  // GitHub, Slack, Tailscale, npm tokens
  [/\b(ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}/g, "[redacted-token]"],
  [/\bxox[abposr]-[A-Za-z0-9-]{10,}/g, "[redacted-token]"],
  [/\btskey-[A-Za-z0-9-]{16,}/g, "[redacted-token]"],
  [/\bnpm_[A-Za-z0-9]{30,}/g, "[redacted-token]"],
  // AWS access key ids
  [/\b(AKIA|ASIA)[0-9A-Z]{16}\b/g, "[redacted-key]"],
  // `password=…`, `api_key: …`, `secret_access_key = "…"`, `token=…` in URLs and config dumps
  [
    /\b([A-Za-z0-9_-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential)[A-Za-z0-9_-]*)(["']?\s*[:=]\s*["']?)[^\s"'&,;}]{4,}/gi,
    "$1$2[redacted]",
  ],
  // user:password@ in URLs
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]+:)[^@\s/]+@/gi, "$1[redacted]@"],
];

export function redactSecrets(text: string): string {
  let out = text;
  for (const [pattern, replacement] of SECRET_PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/** Field names whose values are credentials whatever they look like. */
const SECRET_KEY =
  /passw(or)?d|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|authorization|cookie/i;

/** A log line's structured fields with secret-named fields and secret-shaped values redacted. */
export function redactFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    if (SECRET_KEY.test(key) && value !== null && value !== "") out[key] = "[redacted]";
    else out[key] = redactValue(value);
  }
  return out;
}

/** Strings redacted, objects field by field, arrays item by item (an item may be an object with a token). */
function redactValue(value: unknown): unknown {
  if (typeof value === "string") return redactSecrets(value);
  if (Array.isArray(value)) return value.map(redactValue);
  if (value && typeof value === "object") return redactFields(value as Record<string, unknown>);
  return value;
}
