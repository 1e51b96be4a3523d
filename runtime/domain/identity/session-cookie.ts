/**
 * The web session after a local-mode login: a short JWT in an HttpOnly cookie, signed with a key derived
 * from the secret box's active key (so it needs no extra secret to configure).
 */
import { jwtVerify, SignJWT } from "jose";

export const SESSION_COOKIE = "berth_session";
export const SESSION_TTL_SECONDS = 12 * 60 * 60;
const AUDIENCE = "berth:web-session";
/**
 * When the session was issued, in milliseconds: `iat` holds whole seconds, so a sign-out could not tell a
 * session issued earlier in its second from one issued after it.
 */
const ISSUED_AT_MS = "iat_ms";

export class SessionTokens {
  readonly #key: Uint8Array;

  constructor(key: Uint8Array) {
    this.#key = key;
  }

  async mint(userId: string, now = Date.now()): Promise<string> {
    return new SignJWT({ [ISSUED_AT_MS]: now })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(userId)
      .setAudience(AUDIENCE)
      .setIssuedAt(Math.floor(now / 1000))
      .setExpirationTime(Math.floor(now / 1000) + SESSION_TTL_SECONDS)
      .sign(this.#key);
  }

  /**
   * The user id and when the token was issued (ms), or null for anything that does not verify (the caller
   * answers 401). The caller also checks the issue time against the user's last sign-out.
   */
  async verify(token: string): Promise<{ userId: string; issuedAtMs: number } | null> {
    try {
      const { payload } = await jwtVerify(token, this.#key, { audience: AUDIENCE, algorithms: ["HS256"] });
      if (typeof payload.sub !== "string" || typeof payload.iat !== "number") return null;
      const ms = payload[ISSUED_AT_MS];
      // A session from before the claim existed counts as issued at the start of its second.
      const issuedAtMs = typeof ms === "number" && Number.isSafeInteger(ms) ? ms : payload.iat * 1000;
      return { userId: payload.sub, issuedAtMs };
    } catch {
      return null;
    }
  }
}
