// Runs the driver against a real `pulumi` CLI when one is on PATH (a file:// backend in a temp dir and a stub
// program with no cloud resources, so it needs no credentials and no provider plugins). Where there is no
// CLI, as on the development machines and CI here, every test reports itself skipped, with the reason.
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BuildLog, WorkspaceSpec } from "../driver.ts";
import { StackNotFoundError } from "../errors.ts";
import { PulumiDriver } from "../pulumi/driver.ts";

const cli = spawnSync("pulumi", ["version"], { encoding: "utf8" });
const pulumiVersion = cli.status === 0 ? cli.stdout.trim() : null;
const SKIP = "skipped: no pulumi CLI on PATH";
if (!pulumiVersion)
  console.warn(`stacks/e2e/pulumi-integration.test.ts: ${SKIP}; the real-CLI tests did not run.`);

const log: BuildLog = { stage() {}, line() {} };
const spec: WorkspaceSpec = {
  workspaceId: "it1",
  ownerId: "user_it",
  location: "fsn1",
  serverType: "cx22",
  volumeSizeGb: 10,
  controlPlaneUrl: "https://api.berth.example",
  secrets: { agentToken: "a", ttydCredential: "u:p", resticPassword: "r" },
};

describe(`PulumiDriver with the real pulumi CLI ${pulumiVersion ?? `(${SKIP})`}`, () => {
  let dir: string;
  let driver: PulumiDriver;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-pulumi-it-"));
    driver = new PulumiDriver({
      backendUrl: `file://${dir}/state`,
      masterPassphrase: "integration-master",
      hcloudToken: "unused",
      cloudflare: { apiToken: "unused", accountId: "unused" },
      tailscale: { oauthClientId: "unused", oauthClientSecret: "unused" },
      controlPlaneCidrs: ["198.51.100.7/32"],
      imageSelector: "role=berth-box",
      workRoot: join(dir, "work"),
      pulumiHome: join(dir, "home"),
      policyPacks: [],
      emptyBucket: async () => 0, // no R2 here
      // No cloud resources: outputs computed from the input, with the secret ones as secrets.
      program: (input) => async () => {
        return {
          running: input.running,
          serverId: input.running ? "stub-server" : undefined,
          publicIpv4: input.running ? "127.0.0.1" : undefined,
          volumeId: "stub-volume",
          volumeDevice: "/dev/null",
          bucketName: `berth-${input.workspaceId}`,
          r2AccessKeyId: pulumi.secret("stub-key-id"),
          r2SecretAccessKey: pulumi.secret(input.secrets.resticPassword),
        };
      },
    });
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it.skipIf(!pulumiVersion)(
    "create, hibernate, wake, preview, repair, observe and destroy a stack",
    async () => {
      const signal = new AbortController().signal;
      const started = await driver.apply(spec, "start", log, signal);
      expect(started).toMatchObject({
        running: true,
        serverId: "stub-server",
        secretOutputs: { r2SecretAccessKey: "r" },
      });
      expect(await driver.apply(spec, "stop", log, signal)).toMatchObject({ running: false, serverId: null });
      expect((await driver.apply(spec, "start", log, signal)).running).toBe(true);
      expect((await driver.preview(spec, "stop")).workspaceId).toBe("it1");
      await driver.repair("it1", log, signal);
      await driver.destroy(spec, log, signal);
      await expect(driver.preview(spec, "start")).rejects.toBeInstanceOf(StackNotFoundError);
    },
  );
});
