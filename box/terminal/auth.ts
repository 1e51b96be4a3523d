import { createHash, timingSafeEqual } from "node:crypto";
import { encodeCredential } from "./protocol.ts";

/**
 * Holds the terminal credential in the form ttyd compares (base64 of `user:password`) and checks presented
 * values in constant time. The secret never leaves this object except through `token` for the relay side.
 */
export class TerminalCredential {
  readonly #token: string;
  readonly #digest: Buffer;

  constructor(credential: string) {
    this.#token = encodeCredential(credential);
    this.#digest = digest(this.#token);
  }

  /** The AuthToken value a client must send in its init message. */
  get token(): string {
    return this.#token;
  }

  matchesToken(presented: unknown): boolean {
    return typeof presented === "string" && timingSafeEqual(digest(presented), this.#digest);
  }

  /** ttyd accepts exactly `Basic <base64>`; anything else (other schemes, extra spaces) fails. */
  matchesAuthorizationHeader(header: string | undefined): boolean {
    if (!header?.startsWith("Basic ")) return false;
    return this.matchesToken(header.slice("Basic ".length));
  }

  toJSON(): string {
    return "[redacted]";
  }
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** An endpoint without a credential is a shell for anyone who can connect: allow that on loopback only. */
export function assertCredentialForHost(host: string, credential: string | undefined): void {
  if (credential === undefined && !LOOPBACK.test(host))
    throw new Error(`a terminal endpoint on ${host} needs a credential; only loopback may run without one`);
}
