/**
 * The control plane's VAPID identity for Web Push (RFC 8292): from the environment (every replica must
 * share it: a browser's subscription is bound to the public key it subscribed with), or generated once into
 * the data dir (`vapid-keys.json`, mode 0600) for a single-host install. The file holds the private key
 * sealed with the install's secret box, as every other secret at rest is: a copy of the data dir without
 * the secret keys (a backup, a hosted install whose keys live in BERTH_SECRET_KEYS) cannot sign pushes.
 * A file written in clear by an earlier version is sealed on first start, and one sealed under a key that
 * is no longer the first is sealed again under the first.
 */
import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import webpush from "web-push";
import { type SecretBox, SecretBoxError } from "./secret-box.ts";

export interface VapidKeys {
  publicKey: string;
  privateKey: string;
  /** `mailto:` or `https:` contact the push services may use. */
  subject: string;
}

/** What `vapid-keys.json` holds. `privateKey` is a string only in a file an earlier version wrote. */
interface StoredKeys {
  publicKey: string;
  privateKey: string | { keyId: string; sealed: string };
}

/** Authenticated with the sealed key, so a value sealed for another purpose cannot be put in its place. */
const CONTEXT = "vapid-private-key";

export function loadVapidKeys(options: {
  dataDir: string;
  secretBox: SecretBox;
  publicKey?: string | undefined;
  privateKey?: string | undefined;
  subject?: string | undefined;
  publicUrl?: string | undefined;
}): VapidKeys {
  const subject = options.subject ?? contactFor(options.publicUrl);
  if (options.publicKey && options.privateKey)
    return { publicKey: options.publicKey, privateKey: options.privateKey, subject };
  const { secretBox } = options;
  const path = join(options.dataDir, "vapid-keys.json");
  const seal = (keys: { publicKey: string; privateKey: string }): string => {
    const { keyId, sealed } = secretBox.seal(keys.privateKey, CONTEXT);
    const stored: StoredKeys = {
      publicKey: keys.publicKey,
      privateKey: { keyId, sealed: sealed.toString("base64") },
    };
    return `${JSON.stringify(stored)}\n`;
  };
  // Every write goes to a file of this process's own first, then into place whole: a process reading the
  // file at the same moment (BERTH_WORKERS share the data dir) never sees half of one.
  const fresh = `${path}.${process.pid}.tmp`;
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(fresh, seal(webpush.generateVAPIDKeys()), { mode: 0o600 });
    try {
      linkSync(fresh, path); // unlike a rename, fails if the file exists
    } catch (err) {
      // Another process of this install wrote it first: use theirs.
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    } finally {
      rmSync(fresh, { force: true });
    }
  }
  const stored = readStored(path);
  let privateKey: string;
  if (typeof stored.privateKey === "string") privateKey = stored.privateKey;
  else {
    const sealed = {
      keyId: stored.privateKey.keyId,
      sealed: Buffer.from(stored.privateKey.sealed, "base64"),
    };
    try {
      privateKey = secretBox.open(sealed, CONTEXT);
    } catch (err) {
      if (!(err instanceof SecretBoxError)) throw err;
      throw new Error(
        `${path}: the Web Push private key cannot be opened with this install's secret keys (${err.message}); restore the secret keys it was sealed with, or delete the file to make a new identity (browsers then subscribe again)`,
      );
    }
    if (!secretBox.needsRotation(sealed)) return { publicKey: stored.publicKey, privateKey, subject };
  }
  // In clear, or sealed under an older key: sealed again under the first.
  writeFileSync(fresh, seal({ publicKey: stored.publicKey, privateKey }), { mode: 0o600 });
  renameSync(fresh, path);
  return { publicKey: stored.publicKey, privateKey, subject };
}

/** The file's keys, or an error naming the file when it is not what this module writes. */
function readStored(path: string): StoredKeys {
  let stored: unknown;
  try {
    stored = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    // Not the parser's message: it quotes the text, which may hold a key in clear.
    throw new Error(`${path}: not JSON; delete it to make a new identity`);
  }
  const { publicKey, privateKey } = (stored ?? {}) as Partial<StoredKeys>;
  const sealedShape =
    typeof privateKey === "object" &&
    privateKey !== null &&
    typeof privateKey.keyId === "string" &&
    typeof privateKey.sealed === "string";
  if (typeof publicKey !== "string" || !(typeof privateKey === "string" || sealedShape)) {
    throw new Error(`${path}: expected { publicKey, privateKey }; delete it to make a new identity`);
  }
  return { publicKey, privateKey };
}

/** Push services want a contact; an https URL of this install is one (a local one is not, but works). */
function contactFor(publicUrl: string | undefined): string {
  if (publicUrl?.startsWith("https://")) return new URL(publicUrl).origin;
  return "mailto:berth@localhost";
}
