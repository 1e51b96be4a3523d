import { describe, expect, it } from "vitest";
import { boxTerminalUrl } from "./box-endpoint.ts";
import { close, isSendableCloseCode, mapUpstreamClose } from "./close-codes.ts";
import { parseOfferedProtocols } from "./gateway.ts";

describe("close codes", () => {
  it("maps every upstream code to one ws can send, never echoing reserved ones", () => {
    for (let code = 0; code <= 5000; code++) {
      const mapped = mapUpstreamClose(code);
      expect(isSendableCloseCode(mapped.code)).toBe(true);
      expect(Buffer.byteLength(mapped.reason)).toBeLessThanOrEqual(123);
    }
    expect(mapUpstreamClose(1006)).toEqual(close.connectionLost);
    expect(mapUpstreamClose(1005)).toEqual(close.ended);
    expect(mapUpstreamClose(1004)).toEqual(close.connectionLost);
    expect(mapUpstreamClose(1015)).toEqual(close.connectionLost);
    expect(mapUpstreamClose(1011)).toEqual(close.terminalError);
    expect(mapUpstreamClose(1009)).toEqual({ code: 1009, reason: "terminal closed" });
  });

  it("keeps every reason within the 123 bytes a close frame allows", () => {
    const specs = [
      ...Object.values(close).filter((v) => typeof v === "object"),
      close.unauthorized("token is for another session"),
      close.tooManySockets(1000),
      close.rateLimited(86_400),
      close.boxAsleep("provisioning"),
    ] as Array<{ code: number; reason: string }>;
    for (const spec of specs) {
      expect(isSendableCloseCode(spec.code)).toBe(true);
      expect(Buffer.byteLength(spec.reason)).toBeLessThanOrEqual(123);
    }
  });
});

describe("offered subprotocols", () => {
  it("finds tty, the token and the reconnect counter, and nothing else", () => {
    expect(parseOfferedProtocols("tty, berth.token.a.b.c, berth.reconnect.3, other")).toEqual({
      tty: true,
      token: "a.b.c",
      reconnect: 3,
    });
    expect(parseOfferedProtocols(undefined)).toEqual({ tty: false, token: undefined, reconnect: null });
    expect(parseOfferedProtocols("tty,berth.reconnect.-1,berth.reconnect.1e9")).toMatchObject({
      reconnect: null,
    });
  });

  it("treats a token offered twice as malformed", () => {
    expect(parseOfferedProtocols("tty, berth.token.a.b.c, berth.token.d.e.f").token).toBeNull();
  });
});

describe("the upstream URL", () => {
  const address = {
    instanceId: "i",
    host: "203.0.113.9",
    publicIp: "203.0.113.9",
    tailnetIp: null,
    port: 7681,
  };

  it("carries exactly one arg, the validated session name", () => {
    expect(boxTerminalUrl(address, "main")).toBe("ws://203.0.113.9:7681/ws?arg=main");
    expect(boxTerminalUrl({ ...address, host: "fd7a:115c:a1e0::1" }, "s-1")).toBe(
      "ws://[fd7a:115c:a1e0::1]:7681/ws?arg=s-1",
    );
  });

  it("refuses a name tmux would expand, and a bad port", () => {
    for (const name of ["x#(touch /tmp/p)y", "a&arg=b", "Main", "", "a".repeat(33), "../x", "a b"]) {
      expect(() => boxTerminalUrl(address, name)).toThrow(/invalid session name/);
    }
    expect(() => boxTerminalUrl({ ...address, port: 0 }, "main")).toThrow(/port/);
  });
});
