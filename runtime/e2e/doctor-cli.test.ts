// `npm run berth -- doctor` as a process: its exit code and its lines, against fake providers on loopback.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeProviders, startFakeProviders } from "../test/fake-providers.ts";

const CLI = fileURLToPath(new URL("../app/cli.ts", import.meta.url));
let fake: FakeProviders;
beforeAll(async () => {
  fake = await startFakeProviders();
});
afterAll(() => fake.close());

/** Async, not spawnSync: the fake providers answer from this process's event loop. */
function doctor(env: Record<string, string>): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, "doctor"],
      { env: { PATH: process.env.PATH ?? "", ...env } },
      (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout }),
    );
  });
}

describe("berth doctor (CLI)", () => {
  it("exits 0 with one ok line per check when everything is good", async () => {
    const { code, stdout } = await doctor(fake.env);
    const lines = stdout.trim().split("\n");
    expect(lines).toHaveLength(11);
    for (const line of lines) expect(line).toMatch(/^ok {4}/);
    expect(code).toBe(0);
  });

  it("exits 1 and names the fix when a credential is wrong", async () => {
    const { code, stdout } = await doctor({ ...fake.env, HCLOUD_TOKEN: "wrong-token" });
    expect(stdout).toMatch(
      /^FAIL {2}hetzner .*HCLOUD_TOKEN was refused \(HTTP 401\) → fix: .*Hetzner console/m,
    );
    expect(stdout.match(/^FAIL/gm)).toHaveLength(1);
    expect(code).toBe(1);
  });

  it("documents itself", async () => {
    const out = await new Promise<string>((resolve) =>
      execFile(process.execPath, [CLI, "doctor", "--help"], (_e, stdout) => resolve(stdout)),
    );
    expect(out).toContain("Usage: npm run berth -- doctor");
    expect(out).toContain("HCLOUD_ENDPOINT");
  });
});
