import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SecretBox, SecretBoxError } from "./secret-box.ts";

const key = () => randomBytes(32).toString("base64");

describe("SecretBox", () => {
  const box = SecretBox.fromSpec(`k1:${key()}`);

  it("round-trips and never stores the plaintext", () => {
    const sealed = box.seal("restic-password-123", "workspace:a:restic-password");
    expect(sealed.sealed.includes(Buffer.from("restic-password-123"))).toBe(false);
    expect(box.open(sealed, "workspace:a:restic-password")).toBe("restic-password-123");
  });

  it("uses a fresh IV per seal", () => {
    expect(box.seal("x", "c").sealed.equals(box.seal("x", "c").sealed)).toBe(false);
  });

  it("refuses a value moved to another row (context is authenticated)", () => {
    const sealed = box.seal("secret", "workspace:a:restic-password");
    expect(() => box.open(sealed, "workspace:b:restic-password")).toThrow(SecretBoxError);
  });

  it("refuses tampered or truncated data", () => {
    const sealed = box.seal("secret", "c");
    const flipped = Buffer.from(sealed.sealed);
    flipped[flipped.length - 1]! ^= 1;
    expect(() => box.open({ ...sealed, sealed: flipped }, "c")).toThrow(/failed authentication/);
    expect(() => box.open({ ...sealed, sealed: sealed.sealed.subarray(0, 10) }, "c")).toThrow(/truncated/);
  });

  it("rotates: the new first key seals, old keys still open", () => {
    const oldSpec = `old:${key()}`;
    const before = SecretBox.fromSpec(oldSpec).seal("v", "c");
    const rotated = SecretBox.fromSpec(`new:${key()},${oldSpec}`);
    expect(rotated.open(before, "c")).toBe("v");
    expect(rotated.needsRotation(before)).toBe(true);
    const after = rotated.seal("v", "c");
    expect(after.keyId).toBe("new");
    expect(rotated.needsRotation(after)).toBe(false);
  });

  it("names the missing key id", () => {
    const sealed = SecretBox.fromSpec(`gone:${key()}`).seal("v", "c");
    expect(() => box.open(sealed, "c")).toThrow(/no key with id gone/);
  });

  it("rejects malformed key specs", () => {
    expect(() => SecretBox.fromSpec("")).toThrow(/at least one key/);
    expect(() => SecretBox.fromSpec("nokey")).toThrow(/<id>:<base64/);
    expect(() => SecretBox.fromSpec(`k:${randomBytes(16).toString("base64")}`)).toThrow(/32 bytes/);
  });

  it("generates a local key file once, private to the owner", () => {
    const path = join(mkdtempSync(join(tmpdir(), "berth-sb-")), "keys");
    const a = SecretBox.fromFile(path);
    const content = readFileSync(path, "utf8");
    const b = SecretBox.fromFile(path);
    expect(readFileSync(path, "utf8")).toBe(content);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(b.open(a.seal("v", "c"), "c")).toBe("v");
  });

  it("derives distinct, stable keys per purpose", () => {
    const a = Buffer.from(box.deriveKey("web-session"));
    expect(a).toHaveLength(32);
    expect(a.equals(Buffer.from(box.deriveKey("web-session")))).toBe(true);
    expect(a.equals(Buffer.from(box.deriveKey("terminal")))).toBe(false);
  });
});
