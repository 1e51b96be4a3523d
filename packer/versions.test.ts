import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseHclFile, variables } from "./hcl.ts";
import { PACKER_DIR, REPO_DIR } from "./test/tools.ts";

const pins = (await parseHclFile(join(PACKER_DIR, "versions.auto.pkrvars.hcl"))) as Record<string, string>;
const templateVars = variables(await parseHclFile(join(PACKER_DIR, "box.pkr.hcl")));

describe("packer/versions.auto.pkrvars.hcl", () => {
  it("pins exactly the template's variables that have no default (except the per-build image version)", () => {
    const required = [...templateVars]
      .filter(([name, v]) => !("default" in v) && name !== "image_version")
      .map(([name]) => name)
      .sort();
    expect(Object.keys(pins).sort()).toEqual(required);
  });

  it("holds a well-formed checksum next to every downloaded artifact", () => {
    for (const name of ["restic", "ttyd", "node"]) {
      expect(pins[`${name}_version`], `${name}_version`).toMatch(/^\d+\.\d+\.\d+$/);
      expect(pins[`${name}_sha256`], `${name}_sha256`).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(pins.tailscale_key_fingerprint).toMatch(/^[0-9A-F]{40}$/);
  });

  it("names the source of every checksum in a comment", async () => {
    const text = await readFile(join(PACKER_DIR, "versions.auto.pkrvars.hcl"), "utf8");
    for (const name of ["restic_sha256", "ttyd_sha256", "node_sha256", "tailscale_key_fingerprint"]) {
      const before =
        text
          .slice(0, text.indexOf(`${name} `))
          .split("\n\n")
          .at(-1) ?? "";
      expect(before, name).toMatch(/^# .*(https:\/\/|fingerprint)/ms);
    }
  });

  it("bakes the same Node the repository pins for development", async () => {
    const pkg = JSON.parse(await readFile(join(REPO_DIR, "package.json"), "utf8"));
    expect(pins.node_version).toBe(pkg.devDependencies.node);
  });

  it("agrees with the Claude Code lockfile, which holds the integrity npm ci checks", async () => {
    const dir = join(PACKER_DIR, "claude-code");
    const pkg = JSON.parse(await readFile(join(dir, "package.json"), "utf8"));
    const lock = JSON.parse(await readFile(join(dir, "package-lock.json"), "utf8"));
    expect(pkg.dependencies["@anthropic-ai/claude-code"]).toBe(pins.claude_code_version);
    const wrapper = lock.packages["node_modules/@anthropic-ai/claude-code"];
    expect(wrapper.version).toBe(pins.claude_code_version);
    expect(wrapper.integrity).toMatch(/^sha512-/);
    const native = lock.packages["node_modules/@anthropic-ai/claude-code-linux-x64"];
    expect(native.version).toBe(pins.claude_code_version);
    expect(native.integrity).toMatch(/^sha512-/);
  });
});
