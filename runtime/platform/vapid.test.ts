/**
 * The VAPID identity kept in the data dir: its private key never on disk in clear, stable across restarts
 * and key rotation, and a file an earlier version wrote in clear sealed on first start.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import webpush from "web-push";
import { SecretBox } from "./secret-box.ts";
import { loadVapidKeys } from "./vapid.ts";

const spec = (id: string) => `${id}:${randomBytes(32).toString("base64")}`;
const dirs: string[] = [];
const dataDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-vapid-"));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
const fileOf = (dir: string) => readFileSync(join(dir, "vapid-keys.json"), "utf8");

describe("VAPID keys in the data dir", () => {
  it("generates a key pair once, with the private key sealed (0600), and loads the same pair again", () => {
    const dir = dataDir();
    const secretBox = SecretBox.fromSpec(spec("k1"));
    const first = loadVapidKeys({ dataDir: dir, secretBox });
    expect(fileOf(dir)).not.toContain(first.privateKey);
    expect(fileOf(dir)).toContain(first.publicKey);
    expect(statSync(join(dir, "vapid-keys.json")).mode & 0o777).toBe(0o600);
    expect(loadVapidKeys({ dataDir: dir, secretBox })).toEqual(first);
    // A working pair: web-push signs with it.
    expect(() => webpush.setVapidDetails(first.subject, first.publicKey, first.privateKey)).not.toThrow();
  });

  it("seals a file an earlier version wrote in clear, keeping the identity browsers subscribed to", () => {
    const dir = dataDir();
    const clear = webpush.generateVAPIDKeys();
    writeFileSync(join(dir, "vapid-keys.json"), `${JSON.stringify(clear)}\n`, { mode: 0o600 });
    const secretBox = SecretBox.fromSpec(spec("k1"));
    const loaded = loadVapidKeys({ dataDir: dir, secretBox });
    expect(loaded).toMatchObject(clear);
    expect(fileOf(dir)).not.toContain(clear.privateKey);
    expect(statSync(join(dir, "vapid-keys.json")).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(["vapid-keys.json"]); // no temporary file left
    expect(loadVapidKeys({ dataDir: dir, secretBox })).toEqual(loaded);
  });

  it("seals it again under a new first key, and names the file when no key opens it", () => {
    const dir = dataDir();
    const old = spec("k1");
    const first = loadVapidKeys({ dataDir: dir, secretBox: SecretBox.fromSpec(old) });
    const rotated = SecretBox.fromSpec(`${spec("k2")},${old}`);
    expect(loadVapidKeys({ dataDir: dir, secretBox: rotated })).toEqual(first);
    expect(JSON.parse(fileOf(dir)).privateKey.keyId).toBe("k2");
    // The old key alone no longer opens it; nor does an unrelated one.
    expect(() => loadVapidKeys({ dataDir: dir, secretBox: SecretBox.fromSpec(old) })).toThrow(
      /vapid-keys\.json: the Web Push private key cannot be opened/,
    );
    expect(() => loadVapidKeys({ dataDir: dir, secretBox: SecretBox.fromSpec(spec("k2")) })).toThrow(
      /restore the secret keys/,
    );
  });

  it("names the file when it is not a key file, and leaves no temporary file behind", () => {
    const dir = dataDir();
    const secretBox = SecretBox.fromSpec(spec("k1"));
    // A clear key with its opening quote lost: JSON.parse's own message would quote it.
    writeFileSync(join(dir, "vapid-keys.json"), '{"publicKey":"B","privateKey":secret-part"}');
    expect(() => loadVapidKeys({ dataDir: dir, secretBox })).toThrow(/vapid-keys\.json: not JSON;/);
    expect(() => loadVapidKeys({ dataDir: dir, secretBox })).not.toThrow(/secret/);
    writeFileSync(join(dir, "vapid-keys.json"), '{"publicKey":"B","privateKey":null}');
    expect(() => loadVapidKeys({ dataDir: dir, secretBox })).toThrow(
      /vapid-keys\.json: expected \{ publicKey, privateKey \}/,
    );
    const fresh = dataDir();
    loadVapidKeys({ dataDir: fresh, secretBox });
    expect(readdirSync(fresh)).toEqual(["vapid-keys.json"]);
  });

  it("takes the pair from the environment without touching the data dir", () => {
    const dir = join(dataDir(), "unused");
    const env = webpush.generateVAPIDKeys();
    const keys = loadVapidKeys({
      dataDir: dir,
      secretBox: SecretBox.fromSpec(spec("k1")),
      ...env,
      publicUrl: "https://berth.example.com/app",
    });
    expect(keys).toEqual({ ...env, subject: "https://berth.example.com" });
    expect(existsSync(dir)).toBe(false);
  });
});
