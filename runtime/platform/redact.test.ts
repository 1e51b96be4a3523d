import { describe, expect, it } from "vitest";
import { redactAddresses } from "./redact.ts";

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
