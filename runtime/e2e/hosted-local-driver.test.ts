/**
 * Hosted (multi-user) mode refuses the local driver: its boxes are processes of the control plane's host,
 * so one user's terminal would be a shell next to every other user's box.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../platform/config.ts";

const hosted = {
  CLERK_JWT_KEY: "-----BEGIN PUBLIC KEY-----x",
  BERTH_AUTHORIZED_PARTIES: "https://a",
  BERTH_SECRET_KEYS: "k:x",
  BERTH_HOST: "0.0.0.0",
};

describe("hosted mode and the local driver", { timeout: 60_000 }, () => {
  it("refuses BERTH_DRIVER=local (explicit or by default) with Clerk configured", () => {
    for (const env of [hosted, { ...hosted, BERTH_DRIVER: "local" }]) {
      expect(() => loadConfig(env)).toThrow(/^BERTH_DRIVER: the local driver is single-tenant/);
    }
    expect(loadConfig({ ...hosted, BERTH_DRIVER: "pulumi" }).driver).toBe("pulumi");
  });

  it("stops the CLI with one line naming BERTH_DRIVER", () => {
    const cli = fileURLToPath(new URL("../app/cli.ts", import.meta.url));
    const r = spawnSync(process.execPath, [cli, "serve"], {
      env: { ...process.env, ...hosted, BERTH_DRIVER: "", DATABASE_URL: "" },
      encoding: "utf8",
      timeout: 50_000,
    });
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^berth: invalid configuration: BERTH_DRIVER: the local driver is single-tenant/,
    );
  });
});
