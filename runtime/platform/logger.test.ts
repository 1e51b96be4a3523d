import { Writable } from "node:stream";
import { DrizzleQueryError } from "drizzle-orm/errors";
import { describe, expect, it } from "vitest";
import { createLogger } from "./logger.ts";

/** A logger whose lines land in `lines`. */
function capture() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { log: createLogger("info", sink), lines };
}

describe("logged errors", () => {
  it("keep a failed query's statement and cause but not its values", () => {
    const { log, lines } = capture();
    const failed = new DrizzleQueryError(
      "insert into push_subscriptions (endpoint, auth) values ($1, $2)",
      ["https://push.example/abc", "auth-key-s3cret\nsecond line"],
      new Error('duplicate key value violates unique constraint "push_subscriptions_pkey"'),
    );
    log.error({ err: failed }, "saving failed");
    // Wrapped by a caller, the query error is the cause.
    log.error({ err: new Error("subscribing failed", { cause: failed }) }, "request failed");
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).not.toContain("s3cret");
      expect(line).not.toContain("push.example");
      expect(line).toContain("insert into push_subscriptions");
      expect(line).toContain("params: [2 not logged]");
      expect(line).toContain("duplicate key value");
    }
    expect(JSON.parse(lines[0]!).err).not.toHaveProperty("params");
  });

  it("leave other errors as pino writes them", () => {
    const { log, lines } = capture();
    log.error({ err: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) }, "dial");
    const err = JSON.parse(lines[0]!).err;
    expect(err).toMatchObject({ type: "Error", message: "connect ECONNREFUSED", code: "ECONNREFUSED" });
    expect(err.stack).toContain("connect ECONNREFUSED");
    // Many lines log the error's text under `err`: it passes through untouched.
    log.warn({ err: "Error: recording failed" }, "text");
    expect(JSON.parse(lines[1]!).err).toBe("Error: recording failed");
  });
});
