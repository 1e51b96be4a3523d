// Mock tests of the self-hosters' program (pulumi.runtime.setMocks; this file owns the global mocks).
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { violations } from "../stacks/policy/check.ts";
import { TAILNET_CIDR, WORLD_CIDRS } from "../stacks/workspace/names.ts";
import { installMocks, type MockRun, resolved, settle } from "../stacks/workspace/test/pulumi-mocks.ts";
import { assertSeparateDomains, type InfraConfig, infraProgram } from "./program.ts";
import { infraConfig } from "./test/fixtures.ts";

async function run(
  overrides: Partial<InfraConfig> = {},
): Promise<{ run: MockRun; out: ReturnType<typeof infraProgram> }> {
  const r = await installMocks({ project: "berth-infra", stack: "prod" });
  const out = infraProgram(infraConfig(overrides));
  await resolved(out.stateSecretAccessKey);
  await settle();
  return { run: r, out };
}

describe("infra program", () => {
  it("creates the network, the control-plane host behind its firewall, and a box firewall applied by label", async () => {
    const { run: r, out } = await run();
    expect(r.one("hcloud:index/network:Network")).toMatchObject({
      protect: true,
      inputs: { ipRange: "10.42.0.0/16" },
    });
    expect(r.one("hcloud:index/networkSubnet:NetworkSubnet").inputs).toMatchObject({
      type: "cloud",
      networkZone: "eu-central",
    });
    const host = r.one("hcloud:index/server:Server");
    expect(host.protect).toBe(true);
    expect(host.inputs).toMatchObject({
      serverType: "cx32",
      image: "ubuntu-24.04",
      location: "fsn1",
      deleteProtection: true,
    });

    const firewalls = r.byType("hcloud:index/firewall:Firewall");
    const boxes = firewalls.find((f) => f.name === "boxes")!;
    expect(boxes.inputs.applyTos).toEqual([{ labelSelector: "berth-role=workspace" }]);
    const rules = boxes.inputs.rules as { port?: string; sourceIps: string[] }[];
    expect(rules.find((x) => x.port === "7681")?.sourceIps).toEqual([
      "203.0.113.10/32",
      "2001:db8::1/128",
      TAILNET_CIDR,
    ]);
    expect(await resolved(out.controlPlaneCidrs)).toEqual(["203.0.113.10/32", "2001:db8::1/128"]);

    const cp = firewalls.find((f) => f.name === "control-plane")!;
    const ssh = (cp.inputs.rules as { port?: string; sourceIps: string[] }[]).filter((x) => x.port === "22");
    expect(ssh).toEqual([expect.objectContaining({ sourceIps: ["192.0.2.0/24"] })]);
    for (const f of firewalls)
      expect(await violations({ type: f.type, name: f.name, props: f.inputs })).toEqual([]);
  });

  it("opens no SSH to the control plane when no admin ranges are configured", async () => {
    const { run: r } = await run({ adminCidrs: [] });
    const cp = r.byType("hcloud:index/firewall:Firewall").find((f) => f.name === "control-plane")!;
    const rules = cp.inputs.rules as { port?: string; sourceIps: string[] }[];
    expect(rules.filter((x) => x.port === "22")).toEqual([]);
    for (const x of rules.filter((x) => x.port === "7681"))
      for (const w of WORLD_CIDRS) expect(x.sourceIps).not.toContain(w);
  });

  it("points the API and the wildcard preview domain, in separate zones, at the control plane", async () => {
    const { run: r } = await run();
    const records = r.byType("cloudflare:index/dnsRecord:DnsRecord").map((d) => d.inputs);
    expect(records).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          zoneId: "zone-api",
          name: "api.berth.example",
          type: "A",
          content: "203.0.113.10",
        }),
        expect.objectContaining({
          zoneId: "zone-api",
          name: "api.berth.example",
          type: "AAAA",
          content: "2001:db8::1",
        }),
        expect.objectContaining({
          zoneId: "zone-preview",
          name: "*.preview.berthbox.dev",
          type: "A",
          content: "203.0.113.10",
        }),
        expect.objectContaining({ zoneId: "zone-preview", name: "*.preview.berthbox.dev", type: "AAAA" }),
      ]),
    );
    expect(records).toHaveLength(4);
  });

  it("refuses a preview domain that shares the API's registrable domain or zone", () => {
    expect(() => assertSeparateDomains("api.berth.example", "preview.berth.example", "a", "b")).toThrow(
      /different registrable domain/,
    );
    expect(() => assertSeparateDomains("api.berth.example", "berthbox.dev", "z", "z")).toThrow();
    expect(() => assertSeparateDomains("api.berth.example", "preview.berthbox.dev", "a", "b")).not.toThrow();
  });

  it("keeps stack state in a protected R2 bucket with a token scoped to it, credentials secret", async () => {
    const { run: r, out } = await run();
    const bucket = r.one("cloudflare:index/r2Bucket:R2Bucket");
    expect(bucket).toMatchObject({ protect: true, inputs: { name: "berth-pulumi-state" } });
    expect(
      await violations({
        type: bucket.type,
        name: bucket.name,
        props: bucket.inputs,
        opts: { protect: bucket.protect },
      }),
    ).toEqual([]);
    const token = r.one("cloudflare:index/accountToken:AccountToken");
    const [policy] = token.inputs.policies as { resources: string }[];
    expect(JSON.parse(policy!.resources)).toEqual({
      "com.cloudflare.edge.r2.bucket.acct0123_default_berth-pulumi-state": "*",
    });
    expect(await resolved(out.stateBackendUrl)).toBe(
      "s3://berth-pulumi-state?endpoint=https://acct0123.r2.cloudflarestorage.com&region=auto",
    );
    expect(await pulumi.isSecret(out.stateAccessKeyId)).toBe(true);
    expect(await pulumi.isSecret(out.stateSecretAccessKey)).toBe(true);
    expect(await resolved(out.stateSecretAccessKey)).toBe(
      createHash("sha256").update("cf-token-value-state").digest("hex"),
    );
  });

  it("writes the tailnet policy: the control plane owns tag:workspace and reaches boxes on ttyd and previews only", async () => {
    const { run: r } = await run();
    const acl = r.one("tailscale:index/acl:Acl");
    expect(acl.inputs.overwriteExistingContent).toBe(true);
    const policy = JSON.parse(String(acl.inputs.acl));
    expect(policy.tagOwners["tag:workspace"]).toContain("tag:control-plane");
    expect(policy.acls).toContainEqual({
      action: "accept",
      src: ["tag:control-plane"],
      dst: ["tag:workspace:7681", "tag:workspace:3000-9999"],
    });
    // Boxes never reach each other.
    expect(policy.acls.filter((a: { src: string[] }) => a.src.includes("tag:workspace"))).toEqual([
      { action: "accept", src: ["tag:workspace"], dst: ["tag:control-plane:443"] },
    ]);
    const { run: without } = await run({ manageTailnetAcl: false });
    expect(without.byType("tailscale:index/acl:Acl")).toEqual([]);
  });
});
