/**
 * Terminal socket tokens: short-lived (60 s) HS256 JWTs, bound to one user, workspace and session, that a
 * browser offers as a WebSocket subprotocol entry (`berth.token.<jwt>`), so they never appear in a URL or an
 * access log. Each is recorded in the token ledger (store/terminal-tokens.ts) when minted, by the user it
 * is for, and spent there once when used (as `system:auth`): a replay, a token this control plane never
 * issued (even one signed with a leaked key) or an expired one opens nothing. The signing key is derived from the secret box's active key, so every replica sharing
 * BERTH_SECRET_KEYS verifies every other's tokens.
 */
import { randomUUID } from "node:crypto";
import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import type { TerminalTokenStore } from "../../store/terminal-tokens.ts";

export const TERMINAL_TOKEN_TTL_SECONDS = 60;
export const TERMINAL_TOKEN_AUDIENCE = "berth:terminal";
/** Rows are kept this long after expiry (for operators reading a refusal), then deleted. */
const RETAIN_EXPIRED_MS = 5 * 60_000;
const PURGE_EVERY_MS = 60_000;

export interface TerminalTokenClaims {
  jti: string;
  userId: string;
  workspaceId: string;
  sessionId: string;
  /** A viewer: the relay drops its INPUT messages. */
  readOnly: boolean;
  expiresAt: Date;
}

export interface MintedToken {
  token: string;
  jti: string;
  expiresAt: Date;
}

/** Why a presented token was refused; each maps to a close reason the client can act on. */
export type TokenRefusal = "missing" | "malformed" | "invalid" | "expired" | "used" | "wrong_session";

export type TokenCheck = { ok: true; claims: TerminalTokenClaims } | { ok: false; refusal: TokenRefusal };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// Three base64url parts; the cap keeps a hostile header from costing more than a signature check.
const JWT_SHAPE = /^[A-Za-z0-9_-]{1,512}\.[A-Za-z0-9_-]{1,1024}\.[A-Za-z0-9_-]{1,128}$/;

/** Where a minted token is recorded: the store as the user it is for (their right to open the session). */
export type TerminalTokenLedger = Pick<TerminalTokenStore, "record">;

export class TerminalTokens {
  /** The ledger as `system:auth`: spends presented tokens and purges expired ones. */
  readonly #verifier: Pick<TerminalTokenStore, "spend" | "purgeExpired">;
  readonly #key: Uint8Array;
  readonly #ttlSeconds: number;
  #lastPurge = 0;

  constructor(opts: {
    verifier: Pick<TerminalTokenStore, "spend" | "purgeExpired">;
    key: Uint8Array;
    ttlSeconds?: number;
  }) {
    this.#verifier = opts.verifier;
    this.#key = opts.key;
    this.#ttlSeconds = opts.ttlSeconds ?? TERMINAL_TOKEN_TTL_SECONDS;
  }

  /**
   * Signs a token and records it in `ledger`: pass the transaction that writes the audit row, so both
   * commit together. `now` exists for tests of expiry.
   */
  async mint(
    ledger: TerminalTokenLedger,
    subject: { userId: string; workspaceId: string; sessionId: string; readOnly?: boolean },
    now = Date.now(),
  ): Promise<MintedToken> {
    const jti = randomUUID();
    const iat = Math.floor(now / 1000);
    const exp = iat + this.#ttlSeconds;
    const token = await new SignJWT({
      wid: subject.workspaceId,
      sid: subject.sessionId,
      ...(subject.readOnly ? { ro: true } : {}),
    })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(subject.userId)
      .setAudience(TERMINAL_TOKEN_AUDIENCE)
      .setJti(jti)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(this.#key);
    const expiresAt = new Date(exp * 1000);
    await ledger.record({ jti, userId: subject.userId, sessionId: subject.sessionId, expiresAt });
    return { token, jti, expiresAt };
  }

  /** Checks signature, audience, expiry and shape; no database access. */
  async verify(token: string | undefined): Promise<TokenCheck> {
    if (!token) return { ok: false, refusal: "missing" };
    if (!JWT_SHAPE.test(token)) return { ok: false, refusal: "malformed" };
    try {
      const { payload } = await jwtVerify(token, this.#key, {
        algorithms: ["HS256"],
        audience: TERMINAL_TOKEN_AUDIENCE,
        requiredClaims: ["jti", "sub", "exp", "iat"],
      });
      const { jti, sub, wid, sid, exp, ro } = payload;
      if (
        typeof jti !== "string" ||
        typeof sub !== "string" ||
        typeof wid !== "string" ||
        typeof sid !== "string" ||
        typeof exp !== "number" ||
        (ro !== undefined && ro !== true) ||
        ![jti, sub, wid, sid].every((id) => UUID.test(id))
      )
        return { ok: false, refusal: "invalid" };
      return {
        ok: true,
        claims: {
          jti,
          userId: sub,
          workspaceId: wid,
          sessionId: sid,
          readOnly: ro === true,
          expiresAt: new Date(exp * 1000),
        },
      };
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return { ok: false, refusal: "expired" };
      return { ok: false, refusal: "invalid" };
    }
  }

  /**
   * Spends the token: true exactly once, for an issued, unexpired, unused token whose row names the same
   * user and session. Concurrent uses race on one row; Postgres lets one UPDATE win.
   */
  async consume(claims: TerminalTokenClaims): Promise<boolean> {
    const spent = await this.#verifier.spend(claims);
    this.#maybePurge();
    return spent;
  }

  /** Deletes long-expired rows, at most once a minute per process, off the request path. */
  #maybePurge(): void {
    const now = Date.now();
    if (now - this.#lastPurge < PURGE_EVERY_MS) return;
    this.#lastPurge = now;
    this.#verifier.purgeExpired(new Date(now - RETAIN_EXPIRED_MS)).catch(() => {
      this.#lastPurge = 0; // try again next time
    });
  }
}
