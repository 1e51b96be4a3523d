/**
 * The preview proxy's credentials, none of which is the API's:
 * - one-time codes (60 s, single use, stored hashed) that carry a signed-in user to a preview's own host;
 * - the host cookie that code becomes: a JWT bound to one preview, scoped to that host only;
 * - share links: JWTs bound to a preview and its share_version, so a revoke (version bump) kills them all.
 * All are signed with a key derived from the secret box, so every replica verifies what another minted.
 */
import { createHash, randomBytes } from "node:crypto";
import { type JWTPayload, jwtVerify, SignJWT } from "jose";
import type { SecretBox } from "../../platform/secret-box.ts";
import type { PreviewStore } from "../../store/previews.ts";
import type { PreviewRoute } from "./routing.ts";

export const CODE_TTL_SECONDS = 60;
export const HOST_COOKIE_TTL_SECONDS = 12 * 60 * 60;
export const LINK_DEFAULT_TTL_SECONDS = 7 * 24 * 60 * 60;
export const LINK_MAX_TTL_SECONDS = 30 * 24 * 60 * 60;

const LINK_AUDIENCE = "berth:preview-link";
const COOKIE_AUDIENCE = "berth:preview-host";

/** What a verified host cookie grants: the owner's own access, or a share link's. */
type Grant = { kind: "owner"; userId: string } | { kind: "link"; shareVersion: number };

/** Verified host cookies, so the hot path skips the HMAC; the route checks still run on every request. */
const VERIFIED_MAX = 10_000;

const hash = (code: string) => createHash("sha256").update(code).digest("base64url");

export class PreviewTokens {
  readonly #key: Uint8Array;
  readonly #verified = new Map<string, JWTPayload>();

  constructor(secretBox: SecretBox) {
    this.#key = secretBox.deriveKey("preview-tokens");
  }

  async #sign(claims: Record<string, unknown>, audience: string, subject: string, ttl: number) {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setAudience(audience)
      .setSubject(subject)
      .setIssuedAt(now)
      .setExpirationTime(now + ttl)
      .sign(this.#key);
  }

  async #verify(token: string, audience: string) {
    try {
      return (await jwtVerify(token, this.#key, { audience, algorithms: ["HS256"] })).payload;
    } catch {
      return null;
    }
  }

  mintLink(previewId: string, shareVersion: number, ttlSeconds: number): Promise<string> {
    return this.#sign({ ver: shareVersion }, LINK_AUDIENCE, previewId, ttlSeconds);
  }

  /**
   * A share link is good while the preview is shared by link at the version it was minted for. Returns
   * when the link expires (seconds since the epoch), or null when it grants nothing.
   */
  async verifyLink(token: string, route: PreviewRoute): Promise<number | null> {
    const p = await this.#verify(token, LINK_AUDIENCE);
    const good = p && p.sub === route.previewId && route.share === "link" && p.ver === route.shareVersion;
    return good && typeof p.exp === "number" ? p.exp : null;
  }

  /**
   * The host cookie for a grant, and its lifetime in seconds: HOST_COOKIE_TTL_SECONDS, but never past
   * `notAfter` (a link's own expiry, seconds since the epoch), so a link's cookie ends with the link.
   */
  async mintHostCookie(
    previewId: string,
    grant: Grant,
    notAfter = Number.POSITIVE_INFINITY,
  ): Promise<{ token: string; ttlSeconds: number }> {
    const claims = grant.kind === "owner" ? { uid: grant.userId } : { ver: grant.shareVersion };
    const left = notAfter - Math.floor(Date.now() / 1000);
    const ttlSeconds = Math.max(1, Math.min(HOST_COOKIE_TTL_SECONDS, left));
    const token = await this.#sign({ k: grant.kind, ...claims }, COOKIE_AUDIENCE, previewId, ttlSeconds);
    return { token, ttlSeconds };
  }

  /**
   * Checked against the current route on every request, so a revoke or a change of owner applies at
   * once to cookies already handed out. Returns when the cookie stops granting the route (its expiry, in
   * ms), or null when it grants nothing.
   */
  async hostCookieGrant(token: string, route: PreviewRoute): Promise<number | null> {
    let p: JWTPayload | null | undefined = this.#verified.get(token);
    if (p && (p.exp ?? 0) * 1000 <= Date.now()) {
      this.#verified.delete(token);
      p = undefined;
    }
    if (!p) {
      p = await this.#verify(token, COOKIE_AUDIENCE);
      if (p) {
        if (this.#verified.size >= VERIFIED_MAX) this.#verified.clear();
        this.#verified.set(token, p);
      }
    }
    if (!p || p.sub !== route.previewId) return null;
    const granted =
      p.k === "owner"
        ? p.uid === route.ownerId
        : p.k === "link" && route.share === "link" && p.ver === route.shareVersion;
    return granted ? (p.exp ?? 0) * 1000 : null;
  }

  /**
   * A fresh one-time code on `previewId` for the user whose store `codes` is (only the hash is stored, and
   * only on a preview of theirs).
   */
  async issueCode(codes: Pick<PreviewStore, "recordCode">, previewId: string): Promise<string> {
    const code = randomBytes(32).toString("base64url");
    await codes.recordCode(hash(code), previewId, CODE_TTL_SECONDS);
    return code;
  }

  /**
   * The user the code was issued to, once (`codes` is the store as `system:auth`): the store deletes what
   * it redeems, so a replay (on any replica) finds nothing.
   */
  async redeemCode(
    codes: Pick<PreviewStore, "redeemCode">,
    code: string,
    previewId: string,
  ): Promise<string | null> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(code)) return null;
    return codes.redeemCode(hash(code), previewId);
  }
}
