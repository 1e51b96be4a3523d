import { describe, expect, it } from "vitest";
import { redactAddresses, redactFields, redactSecrets } from "./redact.ts";

describe("redactAddresses", () => {
  it("hides IPv4 and IPv6 addresses", () => {
    expect(redactAddresses("server 203.0.113.7 up; tailnet 100.64.1.2")).toBe(
      "server [address] up; tailnet [address]",
    );
    expect(redactAddresses("ipv6 2a01:4f8:c17:1234::1 ready")).toBe("ipv6 [address] ready");
    expect(redactAddresses("listen on fe80::1")).toBe("listen on [address]");
    expect(redactAddresses("ssh to 198.51.100.20.")).toBe("ssh to [address].");
  });

  it("leaves ordinary log text alone", () => {
    const text = "creating hcloud:index/server:Server ws-3f2504e0 (2 of 5) at 12:30:01, v1.2.3";
    expect(redactAddresses(text)).toBe(text);
  });
});

describe("redactSecrets", () => {
  it("hides secret-shaped values and keeps what names them", () => {
    const cases: Array<[string, string]> = [
      ["Authorization: Bearer abcdefghijklmnop123", "Authorization: Bearer [redacted]"],
      ["stripe sk_live_51HxYzAbCdEfGhIjKlMnOp failed", "stripe [redacted-key] failed"],
      ["key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv ok", "key [redacted-key] ok"],
      ["aws AKIAIOSFODNN7EXAMPLE used", "aws [redacted-key] used"],
      ["password=hunter22 next", "password=[redacted] next"],
      ['{"api_key": "0123456789abcdef"}', '{"api_key": "[redacted]"}'],
      ["aws_secret_access_key = wJalrXUtnFEMI/K7MDENG", "aws_secret_access_key = [redacted]"],
      ["clone https://user:s3cr3tpw@github.com/x", "clone https://user:[redacted]@github.com/x"],
      ["gh ghp_abcdefghijklmnopqrstuvwxyz0123 here", "gh [redacted-token] here"],
      ["berth berth_pat_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA used", "berth [redacted-token] used"],
      [
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
        "jwt [redacted-jwt] end",
      ],
    ];
    for (const [input, expected] of cases) expect(redactSecrets(input)).toBe(expected);
  });

  it("leaves ordinary log text alone", () => {
    const text = "build 3 finished in 12s; token expired, retrying; passed 4 checks; skill-ok";
    expect(redactSecrets(text)).toBe(text);
  });

  it("redacts secret-named fields whatever their value, and secret-shaped values in others", () => {
    expect(
      redactFields({
        password: "x",
        agentToken: "abc",
        nested: { apiKey: "v", note: "Bearer abcdefghijkl" },
        count: 3,
        passed: true,
      }),
    ).toEqual({
      password: "[redacted]",
      agentToken: "[redacted]",
      nested: { apiKey: "[redacted]", note: "Bearer [redacted]" },
      count: 3,
      passed: true,
    });
  });

  it("reaches into arrays, whatever they hold", () => {
    // pino writes an AggregateError's errors, a list of requests, etc. as arrays of objects.
    expect(
      redactFields({
        attempts: [
          { url: "https://x", headers: { authorization: "Basic dXNlcjpwYXNz" } },
          "sk_live_0123456789abcdefXYZ",
        ],
        nested: [[{ token: "abc123" }]],
      }),
    ).toEqual({
      attempts: [{ url: "https://x", headers: { authorization: "[redacted]" } }, "[redacted-key]"],
      nested: [[{ token: "[redacted]" }]],
    });
  });
});
