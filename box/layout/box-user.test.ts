import { describe, expect, it } from "vitest";
import { currentOwner, resolveUser } from "./box-user.ts";

describe("resolveUser", () => {
  it("resolves an existing user through the system database", () => {
    expect(resolveUser("root")).toEqual({ uid: 0, gid: 0 });
  });

  it("names a missing or malformed user clearly", () => {
    expect(() => resolveUser("no-such-user-berth")).toThrow(
      /no-such-user-berth: the box user does not exist on this machine/,
    );
    expect(() => resolveUser("Bad;Name")).toThrow(/is not a valid user name/);
  });

  it("reports the process identity", () => {
    expect(currentOwner().uid).toBe(process.getuid!());
  });
});
