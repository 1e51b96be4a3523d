/**
 * Clerk as the tests stand it in: session JWTs signed with a locally generated RSA-2048 key (the SDK's
 * `jwtKey` only accepts 2048-bit PEMs; notes/protocols.md §4) and a well-formed publishable key.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";

process.env.CLERK_TELEMETRY_DISABLED = "1";

export interface ClerkKeys {
  privateKey: KeyObject;
  /** SPKI PEM, as CLERK_JWT_KEY takes it. */
  jwtKey: string;
}

export function clerkKeys(): ClerkKeys {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicExponent: 65537,
  });
  return { privateKey, jwtKey: publicKey.export({ type: "spki", format: "pem" }).toString() };
}

/** pk_test_ + base64("<host>$"), unpadded, as Clerk issues them. */
export function publishableKey(frontendApiHost = "clerk.berth.test"): string {
  return `pk_test_${Buffer.from(`${frontendApiHost}$`).toString("base64").replace(/=+$/, "")}`;
}

export interface SessionOptions {
  azp: string;
  sub?: string | null;
  exp?: number;
  nbf?: number;
  claims?: Record<string, unknown>;
}

/** A session token shaped like Clerk's v2 session JWT. */
export async function signClerkSession(key: KeyObject, opts: SessionOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ azp: opts.azp, sid: "sess_1", v: 2, ...opts.claims })
    .setProtectedHeader({ alg: "RS256", typ: "JWT" })
    .setIssuer("https://clerk.berth.test")
    .setIssuedAt(now - 10)
    .setNotBefore(opts.nbf ?? now - 10)
    .setExpirationTime(opts.exp ?? now + 60);
  if (opts.sub !== null) jwt.setSubject(opts.sub ?? "user_alice");
  return jwt.sign(key);
}
