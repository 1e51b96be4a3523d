/**
 * Hosted mode: Clerk session tokens, verified by @clerk/backend. With `jwtKey` verification is networkless;
 * with only the secret key the SDK fetches (and caches) Clerk's JWKS.
 */
import { verifyToken } from "@clerk/backend";
import { TokenVerificationErrorReason as Reason, TokenVerificationError } from "@clerk/backend/errors";
import { Unauthenticated } from "../../platform/errors.ts";

export interface ClerkOptions {
  secretKey: string | undefined;
  jwtKey: string | undefined;
  authorizedParties: string[];
}

const CODES: Record<string, string> = {
  [Reason.TokenExpired]: "token_expired",
  [Reason.TokenNotActiveYet]: "token_not_yet_valid",
  [Reason.TokenIatInTheFuture]: "token_not_yet_valid",
  [Reason.TokenInvalidAuthorizedParties]: "token_wrong_azp",
  [Reason.TokenInvalidSignature]: "token_bad_signature",
  [Reason.TokenInvalidAlgorithm]: "token_bad_algorithm",
};

/** Returns the Clerk user id (`sub`) or throws a 401 whose code says why the token was refused. */
export async function verifyClerkSession(token: string, options: ClerkOptions): Promise<string> {
  let payload: { sub?: unknown };
  try {
    payload = await verifyToken(token, {
      secretKey: options.secretKey,
      jwtKey: options.jwtKey,
      authorizedParties: options.authorizedParties,
    });
  } catch (err) {
    if (err instanceof TokenVerificationError) {
      const code = CODES[err.reason] ?? "token_invalid";
      throw new Unauthenticated(
        code,
        `session token rejected: ${code.replace(/^token_/, "").replaceAll("_", " ")}`,
      );
    }
    throw new Unauthenticated("token_invalid", "session token rejected: malformed");
  }
  // The SDK requires `sub` already; checked again because everything downstream keys on it.
  if (typeof payload.sub !== "string" || payload.sub === "") {
    throw new Unauthenticated("token_invalid", "session token rejected: missing sub");
  }
  return payload.sub;
}
