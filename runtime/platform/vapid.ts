/**
 * The control plane's VAPID identity for Web Push (RFC 8292): from the environment (every replica must
 * share it: a browser's subscription is bound to the public key it subscribed with), or generated once into
 * the data dir (`vapid-keys.json`, mode 0600) for a single-process install.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import webpush from "web-push";

export interface VapidKeys {
  publicKey: string;
  privateKey: string;
  /** `mailto:` or `https:` contact the push services may use. */
  subject: string;
}

export function loadVapidKeys(options: {
  dataDir: string;
  publicKey?: string | undefined;
  privateKey?: string | undefined;
  subject?: string | undefined;
  publicUrl?: string | undefined;
}): VapidKeys {
  const subject = options.subject ?? contactFor(options.publicUrl);
  if (options.publicKey && options.privateKey)
    return { publicKey: options.publicKey, privateKey: options.privateKey, subject };
  const path = join(options.dataDir, "vapid-keys.json");
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const keys = webpush.generateVAPIDKeys();
    try {
      writeFileSync(path, `${JSON.stringify(keys)}\n`, { mode: 0o600, flag: "wx" });
    } catch (err) {
      // Another process of this install wrote it first: use theirs.
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
  const stored = JSON.parse(readFileSync(path, "utf8")) as { publicKey: string; privateKey: string };
  return { publicKey: stored.publicKey, privateKey: stored.privateKey, subject };
}

/** Push services want a contact; an https URL of this install is one (a local one is not, but works). */
function contactFor(publicUrl: string | undefined): string {
  if (publicUrl?.startsWith("https://")) return new URL(publicUrl).origin;
  return "mailto:berth@localhost";
}
