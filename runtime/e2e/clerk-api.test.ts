/**
 * Hosted-mode authentication against a real control plane, with Clerk verification networkless through
 * `jwtKey` and a locally generated RSA-2048 key (the SDK only accepts 2048-bit PEMs; notes/protocols.md §4).
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { clerkKeys, signClerkSession } from "../test/clerk.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";

const ORIGIN = "https://app.berth.test";
const { privateKey, jwtKey } = clerkKeys();
const other = clerkKeys();

function token(
  claims: Record<string, unknown> = {},
  opts: { key?: KeyObject; sub?: string | null; exp?: number; nbf?: number } = {},
): Promise<string> {
  return signClerkSession(opts.key ?? privateKey, { azp: ORIGIN, ...opts, claims });
}

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");

describe("Clerk session tokens (hosted mode)", async () => {
  const cp = await startTestControlPlane({
    CLERK_JWT_KEY: jwtKey,
    BERTH_AUTHORIZED_PARTIES: ORIGIN,
    BERTH_LOCAL_TOKEN: "",
  });
  const me = (t: string) => cp.api("/api/v1/me", { token: t });

  it("accepts a valid token and creates the user on first request", async () => {
    const res = await me(await token());
    expect(res.status).toBe(200);
    const { rows } = await cp.deps.database.pool.query(
      "SELECT external_id FROM users WHERE external_id = 'user_alice'",
    );
    expect(rows).toHaveLength(1);
    expect((await me(await token())).status).toBe(200);
    const again = await cp.deps.database.pool.query(
      "SELECT count(*)::int AS n FROM users WHERE external_id = 'user_alice'",
    );
    expect(again.rows[0].n).toBe(1);
  });

  const now = () => Math.floor(Date.now() / 1000);
  const rejected: Array<[string, () => Promise<string>, string]> = [
    ["expired", () => token({}, { exp: now() - 120, nbf: now() - 300 }), "token_expired"],
    ["not yet valid", () => token({}, { nbf: now() + 600, exp: now() + 900 }), "token_not_yet_valid"],
    ["wrong azp", () => token({ azp: "https://evil.test" }), "token_wrong_azp"],
    ["signed by another key", () => token({}, { key: other.privateKey }), "token_bad_signature"],
    [
      "alg none",
      async () => `${b64({ alg: "none", typ: "JWT" })}.${(await token()).split(".")[1]}.`,
      "token_bad_algorithm",
    ],
    [
      "HS256 keyed with the public key",
      async () =>
        new SignJWT({ azp: ORIGIN, sub: "user_alice" })
          .setProtectedHeader({ alg: "HS256", typ: "JWT" })
          .setIssuedAt()
          .setExpirationTime("60s")
          .sign(new TextEncoder().encode(jwtKey)),
      "token_bad_algorithm",
    ],
    ["missing sub", () => token({}, { sub: null }), "token_invalid"],
    ["garbage", async () => "not-a-jwt", "token_invalid"],
  ];

  for (const [name, make, code] of rejected) {
    it(`rejects a token that is ${name} with 401 ${code}`, async () => {
      const res = await me(await make());
      expect(res.status).toBe(401);
      const body = await json(res);
      expect(body.error.code).toBe(code);
      expect(body.error.requestId).toBeTruthy();
    });
  }

  it("refuses the local login route in hosted mode", async () => {
    const res = await cp.api("/api/v1/auth/login", { method: "POST", json: { token: "x" } });
    expect(res.status).toBe(404);
  });

  it("never accepts a key that is not RSA-2048 SPKI as config (sanity of the fixture)", () => {
    expect(createPublicKey(jwtKey).asymmetricKeyDetails?.modulusLength).toBe(2048);
  });
});
