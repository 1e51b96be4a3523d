/**
 * What went wrong, in the domain's words. Services, the store, the gateway and the workers throw these; the
 * HTTP edge (runtime/api/errors.ts) turns them into the one JSON error shape and the terminal gateway into
 * WebSocket close codes. Nothing below the edge knows HTTP statuses.
 *
 * `code` is the stable, machine-readable reason clients branch on (`workspace_limit`, `build_finished`…);
 * `details` are extra fields the client may show (never secrets, never box addresses).
 */
export abstract class DomainError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }
}

/** The resource does not exist, or belongs to someone else: the two are indistinguishable on purpose. */
export class NotFound extends DomainError {
  constructor(what: string, code = "not_found") {
    super(code, `${what} not found`);
  }
}

/** The request is valid but the resource's current state forbids it (a transition, a limit, a race). */
export class Conflict extends DomainError {}

/** The input itself is wrong; `details.field` names the offending field when there is one. */
export class Invalid extends DomainError {}

/** No credential, or one that does not prove who the caller is. */
export class Unauthenticated extends DomainError {}

/** The caller is known but may not do this (e.g. a read-only viewer typing). */
export class Forbidden extends DomainError {}

/** Too many attempts; the caller may retry after `retryAfterSeconds`. */
export class RateLimited extends DomainError {
  readonly retryAfterSeconds: number;

  constructor(what: string, retryAfterSeconds: number) {
    super("rate_limited", `too many ${what} attempts; retry in ${retryAfterSeconds}s`);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The caller's plan does not cover this (a quota is used up); `code` names the quota (`quota_minutes`…). */
export class PaymentRequired extends DomainError {}

/** A dependency of ours is not there right now (a box asleep, a client not built); retrying may help. */
export class Unavailable extends DomainError {}
