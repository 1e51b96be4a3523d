/**
 * AES-256-GCM for secrets at rest. Each sealed value carries the id of the key that sealed it, so a new key
 * can be put first (used for new seals) while old keys stay to open existing values until re-sealed.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface SealedSecret {
  keyId: string;
  /** iv ‖ tag ‖ ciphertext */
  sealed: Buffer;
}

export class SecretBoxError extends Error {
  override name = "SecretBoxError";
}

export class SecretBox {
  readonly #keys: Map<string, Buffer>;
  readonly #activeKeyId: string;

  constructor(keys: Array<{ id: string; key: Buffer }>) {
    if (keys.length === 0) throw new SecretBoxError("at least one key is required");
    for (const { id, key } of keys) {
      if (!/^[A-Za-z0-9_-]{1,32}$/.test(id))
        throw new SecretBoxError(`key id ${JSON.stringify(id)} is not valid`);
      if (key.length !== 32) throw new SecretBoxError(`key ${id} must be 32 bytes, got ${key.length}`);
    }
    this.#keys = new Map(keys.map(({ id, key }) => [id, key]));
    this.#activeKeyId = keys[0]!.id;
  }

  /** Parses `kid:base64,kid2:base64`; the first key seals, all keys open. */
  static fromSpec(spec: string): SecretBox {
    const keys = spec
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean)
      .map((entry) => {
        const i = entry.indexOf(":");
        if (i <= 0) throw new SecretBoxError("each key must look like <id>:<base64 of 32 bytes>");
        return { id: entry.slice(0, i), key: Buffer.from(entry.slice(i + 1), "base64") };
      });
    return new SecretBox(keys);
  }

  /** Local mode: a key generated on first start and kept (0600) in the data directory. */
  static fromFile(path: string): SecretBox {
    if (!existsSync(path)) {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      writeFileSync(path, `k1:${randomBytes(32).toString("base64")}\n`, { mode: 0o600, flag: "wx" });
    }
    return SecretBox.fromSpec(readFileSync(path, "utf8"));
  }

  get activeKeyId(): string {
    return this.#activeKeyId;
  }

  /** `context` (e.g. `workspace:<id>:restic-password`) is authenticated, so a value cannot be moved to another row. */
  seal(plaintext: string, context: string): SealedSecret {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.#keys.get(this.#activeKeyId)!, iv);
    cipher.setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return { keyId: this.#activeKeyId, sealed: Buffer.concat([iv, cipher.getAuthTag(), body]) };
  }

  open(secret: SealedSecret, context: string): string {
    const key = this.#keys.get(secret.keyId);
    if (!key) throw new SecretBoxError(`no key with id ${secret.keyId} is configured`);
    if (secret.sealed.length < IV_BYTES + TAG_BYTES) throw new SecretBoxError("sealed value is truncated");
    const decipher = createDecipheriv("aes-256-gcm", key, secret.sealed.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(secret.sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    try {
      return Buffer.concat([
        decipher.update(secret.sealed.subarray(IV_BYTES + TAG_BYTES)),
        decipher.final(),
      ]).toString("utf8");
    } catch {
      throw new SecretBoxError("sealed value failed authentication (wrong key, context or tampered data)");
    }
  }

  /** A 32-byte key for another purpose (e.g. signing session tokens), derived so it needs no config of its own. */
  deriveKey(purpose: string): Uint8Array {
    return new Uint8Array(hkdfSync("sha256", this.#keys.get(this.#activeKeyId)!, "berth", purpose, 32));
  }

  /** Whether a value was sealed under an older key and should be re-sealed. */
  needsRotation(secret: SealedSecret): boolean {
    return secret.keyId !== this.#activeKeyId;
  }
}
