/**
 * Test harness around the scripted `pulumi` in ./fake-pulumi: a temporary PULUMI_HOME (where the fake keeps
 * its scenario, state and call log) and work root, and a `PulumiCommand` for it. The lifecycle tests in
 * runtime/ can use it to drive the real `PulumiDriver`.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { EngineEvent } from "@pulumi/pulumi/automation/index.js";
import * as auto from "@pulumi/pulumi/automation/index.js";
import type { PulumiDriverOptions } from "../driver.ts";
import type { S3Target } from "../r2.ts";

export const FAKE_PULUMI_ROOT = fileURLToPath(new URL("./fake-pulumi", import.meta.url));

export interface FakeResponse {
  exitCode?: number;
  stdout?: string;
  stderr?: string;
  sleepMs?: number;
  hang?: boolean;
  /** Holds the call until `release(holdUntil)`: a test decides when it ends. */
  holdUntil?: string;
  events?: Partial<EngineEvent>[];
  outputs?: Record<string, unknown>;
  secretOutputs?: string[];
}

export interface FakeScenario {
  /** Keyed by `<command>` or `<command>@<stack>`; an array answers successive calls. */
  responses?: Record<string, FakeResponse | FakeResponse[]>;
}

export interface FakeCall {
  kind: "call" | "exit" | "signal" | "crash";
  pid: number;
  command: string;
  stack?: string;
  argv: string[];
  cwd: string;
  files: string[];
  env: Record<string, string>;
  t: number;
  code?: number;
  signal?: string;
}

export class FakePulumi {
  readonly dir: string;
  readonly home: string;
  readonly workRoot: string;
  /** Buckets the driver asked to empty (the default `emptyBucket` of `driverOptions`). */
  readonly emptied: S3Target[] = [];

  private constructor(dir: string) {
    this.dir = dir;
    this.home = join(dir, "pulumi-home");
    this.workRoot = join(dir, "work");
    mkdirSync(join(this.home, "fake", "stacks"), { recursive: true });
  }

  static async create(scenario: FakeScenario = {}): Promise<FakePulumi> {
    const fake = new FakePulumi(await mkdtemp(join(tmpdir(), "berth-fake-pulumi-")));
    fake.script(scenario);
    return fake;
  }

  script(scenario: FakeScenario): void {
    writeFileSync(join(this.home, "fake", "scenario.json"), JSON.stringify(scenario));
  }

  /** A stack that already exists, as after an earlier `up`. */
  seedStack(name: string, outputs: Record<string, unknown> = {}, secretOutputs: string[] = []): void {
    writeFileSync(
      join(this.home, "fake", "stacks", `${name}.json`),
      JSON.stringify({ outputs, secretOutputs }),
    );
  }

  /** Lets every call held by `holdUntil: name` go on (and later ones pass straight through). */
  release(name: string): void {
    writeFileSync(join(this.home, "fake", name), "");
  }

  hasStack(name: string): boolean {
    return existsSync(join(this.home, "fake", "stacks", `${name}.json`));
  }

  /** Every record the fake wrote, in order. */
  records(): FakeCall[] {
    const file = join(this.home, "fake", "calls.jsonl");
    if (!existsSync(file)) return [];
    return readFileSync(file, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as FakeCall);
  }

  calls(): FakeCall[] {
    return this.records().filter((r) => r.kind === "call");
  }

  commands(): string[] {
    return this.calls().map((c) => c.command);
  }

  pulumiCommand(): Promise<auto.PulumiCommand> {
    return auto.PulumiCommand.get({ root: FAKE_PULUMI_ROOT, skipVersionCheck: true });
  }

  /** Driver options wired to this fake; the secrets are distinctive so tests can look for them. */
  async driverOptions(overrides: Partial<PulumiDriverOptions> = {}): Promise<PulumiDriverOptions> {
    return {
      backendUrl: `file://${join(this.dir, "state")}`,
      backendEnv: { AWS_SECRET_ACCESS_KEY: "SECRET-backend-aws-key" },
      masterPassphrase: "SECRET-master-passphrase",
      hcloudToken: "SECRET-hcloud-token",
      cloudflare: { apiToken: "SECRET-cloudflare-token", accountId: "acct0123" },
      tailscale: { oauthClientId: "ts-client", oauthClientSecret: "SECRET-tailscale-oauth" },
      controlPlaneCidrs: ["198.51.100.7/32"],
      imageSelector: "role=berth-box",
      workRoot: this.workRoot,
      pulumiHome: this.home,
      pulumiCommand: await this.pulumiCommand(),
      emptyBucket: async (target) => {
        this.emptied.push(target);
        return 3;
      },
      ...overrides,
    };
  }

  async dispose(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
