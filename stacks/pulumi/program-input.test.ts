// The driver's half of the closure: spec + driver options → program input → the resources the program
// registers. Mocked engine (pulumi.runtime.setMocks): this file owns the process-global mocks.
import { describe, expect, it } from "vitest";
import type { WorkspaceSpec } from "../driver.ts";
import { SECRET_OUTPUTS, workspaceProgram } from "../workspace/program.ts";
import { installMocks, settle } from "../workspace/test/pulumi-mocks.ts";
import { PulumiDriver, type PulumiDriverOptions } from "./driver.ts";

const spec: WorkspaceSpec = {
  workspaceId: "b7",
  ownerId: "user_1",
  location: "",
  serverType: "cax21",
  volumeSizeGb: 40,
  controlPlaneUrl: "https://api.berth.example",
  secrets: {
    agentToken: "SECRET-agent",
    ttydCredential: "berth:SECRET-ttyd",
    resticPassword: "SECRET-restic",
  },
};

const options: PulumiDriverOptions = {
  backendUrl: "file:///nonexistent",
  masterPassphrase: "m",
  hcloudToken: "SECRET-hcloud",
  cloudflare: { apiToken: "SECRET-cf", accountId: "acct9" },
  tailscale: { oauthClientId: "id", oauthClientSecret: "SECRET-ts", tags: ["tag:workspace", "tag:berth"] },
  controlPlaneCidrs: ["198.51.100.7/32"],
  previewPorts: { from: 4000, to: 4999 },
  imageSelector: "role=berth-box,version=7",
  defaults: { location: "nbg1" },
  workRoot: "/nonexistent",
  pulumiHome: "/nonexistent",
};
const driver = new PulumiDriver(options);

describe("PulumiDriver.programInput → workspace program", () => {
  it("builds the program from the spec, the driver's settings and defaults", async () => {
    const run = await installMocks({ project: "berth-workspaces", stack: "ws-b7" });
    await workspaceProgram(driver.programInput(spec, { running: true, protect: true }))();
    await settle();

    const image = run.invokes.find((i) => i.token === "hcloud:index/getImage:getImage");
    expect(image?.inputs).toMatchObject({
      withSelector: "role=berth-box,version=7",
      withArchitecture: "arm",
    });
    expect(run.one("hcloud:index/server:Server").inputs).toMatchObject({
      location: "nbg1",
      serverType: "cax21",
    });
    expect(run.one("hcloud:index/volume:Volume").inputs).toMatchObject({ size: 40, location: "nbg1" });
    const rules = run.one("hcloud:index/firewall:Firewall").inputs.rules as {
      port?: string;
      sourceIps: string[];
    }[];
    expect(rules.find((r) => r.port === "4000-4999")?.sourceIps).toEqual([
      "198.51.100.7/32",
      "100.64.0.0/10",
    ]);
    expect(run.one("tailscale:index/tailnetKey:TailnetKey").inputs.tags).toEqual([
      "tag:workspace",
      "tag:berth",
    ]);
    const server = run.one("hcloud:index/server:Server");
    expect(server.secretInputs).toContain("userData");
    expect(String(server.inputs.userData)).toContain("SECRET-agent");
    expect(run.one("pulumi:providers:hcloud").inputs.token).toBe("SECRET-hcloud");
  });

  it("names as the backup repository the bucket the program creates, read with the stack's bucket keys", async () => {
    const run = await installMocks({ project: "berth-workspaces", stack: "ws-b7" });
    await workspaceProgram(driver.programInput(spec, { running: true, protect: true }))();
    await settle();
    const bucket = run.one("cloudflare:index/r2Bucket:R2Bucket").inputs.name;
    expect(driver.backupRepository("b7")).toEqual({
      url: `s3:https://acct9.r2.cloudflarestorage.com/${bucket}`,
      s3SecretOutputs: { accessKeyId: "r2AccessKeyId", secretAccessKey: "r2SecretAccessKey" },
    });
    expect(SECRET_OUTPUTS).toEqual(["r2AccessKeyId", "r2SecretAccessKey"]);
  });

  it("refuses a spec with neither a location nor a default", () => {
    const bare = new PulumiDriver({ ...options, defaults: {} });
    expect(() => bare.programInput(spec, { running: true, protect: true })).toThrow(/location/);
  });
});
