import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { parseHcl, parseHclFile } from "./hcl.ts";
import { provisionerLeaks, scanText, secretLiteralRules } from "./secret-scan.ts";
import { PACKER_DIR } from "./test/tools.ts";

// Fake values assembled at run time, so no secret-looking literal is committed even in a test.
const FAKE_TAILSCALE_KEY = ["tskey", "auth", "kTESTONLY0000CNTRL-notarealkey"].join("-");
const FAKE_HCLOUD_TOKEN = "Zz9".repeat(21).concat("Q");

const leakyTemplate = (provisioner: string) => `
variable "hcloud_token" {
  type      = string
  sensitive = true
  default   = env("HCLOUD_TOKEN")
}
variable "node_version" {
  type = string
}
source "hcloud" "box" {
  token = var.hcloud_token
}
build {
  sources = ["source.hcloud.box"]
  provisioner "shell" {
${provisioner}
  }
}
`;

async function shippedFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await shippedFiles(path)));
    else out.push(path);
  }
  return out;
}

describe("provisionerLeaks", () => {
  it("catches a sensitive variable passed to a provisioner", async () => {
    const doc = await parseHcl("t.pkr.hcl", leakyTemplate(`environment_vars = ["T=\${var.hcloud_token}"]`));
    expect(provisionerLeaks(doc)).toEqual([
      { where: 'provisioner "shell" #1', rule: "uses sensitive variable hcloud_token" },
    ]);
  });

  it("catches a secret embedded as a literal, without echoing it", async () => {
    const doc = await parseHcl(
      "t.pkr.hcl",
      leakyTemplate(`inline = ["tailscale up --auth-key=${FAKE_TAILSCALE_KEY}"]`),
    );
    const findings = provisionerLeaks(doc);
    expect(findings).toEqual([{ where: 'provisioner "shell" #1', rule: "Tailscale key" }]);
    expect(JSON.stringify(findings)).not.toContain(FAKE_TAILSCALE_KEY);
  });

  it("catches env() inside a provisioner, which bypasses the sensitive marking", async () => {
    const doc = await parseHcl("t.pkr.hcl", leakyTemplate(`inline = ["echo \${env("HCLOUD_TOKEN")}"]`));
    expect(provisionerLeaks(doc).map((f) => f.rule)).toContain("reads the environment with env()");
  });

  it("lets a non-sensitive variable through", async () => {
    const doc = await parseHcl("t.pkr.hcl", leakyTemplate(`environment_vars = ["V=\${var.node_version}"]`));
    expect(provisionerLeaks(doc)).toEqual([]);
  });
});

describe("secretLiteralRules", () => {
  it("tells an API token from a SHA-256 digest", () => {
    expect(secretLiteralRules(`token = "${FAKE_HCLOUD_TOKEN}"`)).toEqual(["API-token-like string"]);
    expect(secretLiteralRules(`sha = "${"0123456789abcdef".repeat(4)}"`)).toEqual([]);
  });

  it("flags a private key header", () => {
    expect(secretLiteralRules(["-----BEGIN OPENSSH", "PRIVATE KEY-----"].join(" "))).toEqual([
      "PEM private key",
    ]);
  });
});

describe("the box image", () => {
  it("has no provisioner that touches a sensitive variable or embeds a secret", async () => {
    const doc = await parseHclFile(join(PACKER_DIR, "box.pkr.hcl"));
    expect(provisionerLeaks(doc)).toEqual([]);
  });

  it("ships no secret-looking literal in any script, unit, helper or pin file", async () => {
    const files = [
      join(PACKER_DIR, "box.pkr.hcl"),
      join(PACKER_DIR, "versions.auto.pkrvars.hcl"),
      // check-no-secrets.sh is left out: its job is to hold these very patterns (it has its own tests).
      ...(await shippedFiles(join(PACKER_DIR, "scripts"))).filter((f) => !f.endsWith("check-no-secrets.sh")),
      ...(await shippedFiles(join(PACKER_DIR, "files"))),
      join(PACKER_DIR, "claude-code", "package.json"),
    ];
    const findings = [];
    for (const file of files) {
      findings.push(...scanText(relative(PACKER_DIR, file), await readFile(file, "utf8")));
    }
    expect(findings).toEqual([]);
  });
});
