/**
 * How restic's failures are read, for both exit-code conventions (../shared/notes/protocols.md §3): 0.17+
 * says 10/11/12, 0.14 says 1 and words it on stderr. Only 0.14 runs on this machine, so the newer codes
 * are checked here as data; the real runs are in box/e2e/backups.test.ts.
 */
import { describe, expect, it } from "vitest";
import { assertSnapshotId, Restic, ResticError } from "./restic.ts";

const restic = new Restic({
  url: "s3:http://127.0.0.1:1/b/x",
  password: { value: "pw-secret-value" },
  s3: { accessKeyId: "AKIAEXAMPLEKEY", secretAccessKey: "s3-secret-value-123" },
});

describe("restic failures", () => {
  it.each([
    [10, "Fatal: repository does not exist", "repository-missing", false],
    [11, "unable to create lock in backend", "locked", false],
    [12, "Fatal: wrong password or no key found", "wrong-password", false],
    [130, "", "canceled", false],
    [
      1,
      'Fatal: unable to open config file: Stat: Head "http://x/config": dial tcp: connect: connection refused\nIs there a repository at the following location?',
      "unreachable",
      true,
    ],
    [
      1,
      "Fatal: unable to open config file: Stat: The specified key does not exist.\nIs there a repository at the following location?",
      "repository-missing",
      false,
    ],
    [1, "Fatal: wrong password or no key found", "wrong-password", false],
    [1, "Fatal: unable to create lock in backend: repository is already locked by PID 7", "locked", false],
    [1, "Fatal: unable to open config file: Access Denied. (403)", "denied", true],
    [1, '{"message_type":"exit_error","code":1,"message":"Fatal: something odd"}', "fatal", false],
  ])("exit %i with %j is %s", (code, stderr, failure, retryable) => {
    const err = restic.classify(code, stderr);
    expect(err).toBeInstanceOf(ResticError);
    expect(err.failure).toBe(failure);
    expect(err.retryable).toBe(retryable);
  });

  it("names the failure in words first, and never carries a secret", () => {
    const err = restic.classify(
      1,
      "Fatal: connection refused for key AKIAEXAMPLEKEY secret s3-secret-value-123 pw pw-secret-value",
    );
    expect(err.message).toMatch(/^the backup storage could not be reached: /);
    for (const s of ["AKIAEXAMPLEKEY", "s3-secret-value-123", "pw-secret-value"])
      expect(err.message).not.toContain(s);
  });

  it("passes secrets through the environment only", () => {
    const env = restic.env();
    expect(env).toMatchObject({
      RESTIC_REPOSITORY: "s3:http://127.0.0.1:1/b/x",
      RESTIC_PASSWORD: "pw-secret-value",
      AWS_ACCESS_KEY_ID: "AKIAEXAMPLEKEY",
      AWS_SECRET_ACCESS_KEY: "s3-secret-value-123",
      AWS_DEFAULT_REGION: "auto",
    });
    const fromFile = new Restic({ url: "/r", password: { file: "/run/creds/restic-password" } }).env();
    expect(fromFile.RESTIC_PASSWORD_FILE).toBe("/run/creds/restic-password");
    expect(fromFile.RESTIC_PASSWORD).toBeUndefined();
  });

  it("takes only hex snapshot ids onto a command line", () => {
    expect(() => assertSnapshotId("deadbeef")).not.toThrow();
    for (const bad of ["--help", "latest", "../x", "DEADBEEF", "abc"])
      expect(() => assertSnapshotId(bad)).toThrow();
  });
});
