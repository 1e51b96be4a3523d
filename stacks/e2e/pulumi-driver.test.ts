import { existsSync, readdirSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { BuildLog, BuildLogLevel, WorkspaceSpec } from "../driver.ts";
import { DriverError, OperationCanceledError, StackBusyError, StackNotFoundError } from "../errors.ts";
import { DEFAULT_POLICY_PACK, PulumiDriver } from "../pulumi/driver.ts";
import { type FakeCall, FakePulumi, type FakeResponse } from "../pulumi/test/fake-cli.ts";
import { waitUntil } from "../pulumi/test/wait.ts";

const SECRETS = {
  agentToken: "SECRET-agent-token",
  ttydCredential: "berth:SECRET-ttyd",
  resticPassword: "SECRET-restic",
};

function spec(id = "a1"): WorkspaceSpec {
  return {
    workspaceId: id,
    ownerId: "user_1",
    location: "fsn1",
    serverType: "cx22",
    volumeSizeGb: 10,
    controlPlaneUrl: "https://api.berth.example",
    secrets: SECRETS,
  };
}

function upOutputs(id: string, running: boolean): FakeResponse {
  return {
    outputs: {
      running,
      ...(running ? { serverId: "101", publicIpv4: "203.0.113.5" } : {}),
      volumeId: "201",
      volumeDevice: "/dev/disk/by-id/scsi-0HC_Volume_201",
      bucketName: `berth-${id}`,
      firewallId: "301",
      resticRepository: `s3:https://acct0123.r2.cloudflarestorage.com/berth-${id}`,
      r2AccessKeyId: "SECRET-r2-access-key-id",
      r2SecretAccessKey: "SECRET-r2-secret-access-key",
    },
    secretOutputs: ["r2AccessKeyId", "r2SecretAccessKey"],
  };
}

class RecordingLog implements BuildLog {
  stages: string[] = [];
  lines: [BuildLogLevel, string][] = [];
  stage(name: string) {
    this.stages.push(name);
  }
  line(level: BuildLogLevel, message: string) {
    this.lines.push([level, message]);
  }
}

const signal = () => new AbortController().signal;
const argOf = (c: FakeCall | undefined, flag: string) => c?.argv[c.argv.indexOf(flag) + 1];

let fake: FakePulumi;
let driver: PulumiDriver;
beforeEach(async () => {
  fake = await FakePulumi.create();
  driver = new PulumiDriver(await fake.driverOptions());
});
afterEach(async () => {
  await fake.dispose();
});

describe("PulumiDriver with a scripted pulumi", () => {
  it("create: selects, falls back to init with the passphrase provider, then up with the inline program", async () => {
    fake.script({ responses: { up: upOutputs("a1", true) } });
    const out = await driver.apply(spec("a1"), "start", new RecordingLog(), signal());

    expect(fake.commands()).toEqual([
      "stack select",
      "stack init",
      "up",
      "stack output",
      "stack output",
      "stack history",
    ]);
    const [select, init, up] = fake.calls();
    expect(select!.argv).toEqual(["stack", "select", "--stack", "ws-a1", "--non-interactive"]);
    expect(init!.argv).toEqual([
      "stack",
      "init",
      "ws-a1",
      "--secrets-provider",
      "passphrase",
      "--non-interactive",
    ]);
    expect(up!.argv.slice(0, 3)).toEqual(["up", "--yes", "--skip-preview"]);
    expect(argOf(up, "--exec-kind")).toBe("auto.inline");
    expect(up!.argv.some((a) => /^--client=127\.0\.0\.1:\d+$/.test(a))).toBe(true);
    expect(argOf(up, "--event-log")).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(argOf(up, "--policy-pack")).toBe(DEFAULT_POLICY_PACK);
    expect(argOf(up, "--color")).toBe("never");
    expect(argOf(up, "--stack")).toBe("ws-a1");
    // Backend, passphrase and provider credentials go by environment.
    expect(up!.env).toMatchObject({
      PULUMI_BACKEND_URL: expect.stringMatching(/^file:\/\//),
      PULUMI_CONFIG_PASSPHRASE: driver.stackPassphrase("a1"),
      PULUMI_HOME: fake.home,
      HCLOUD_TOKEN: "SECRET-hcloud-token",
      CLOUDFLARE_API_TOKEN: "SECRET-cloudflare-token",
      TAILSCALE_OAUTH_CLIENT_SECRET: "SECRET-tailscale-oauth",
      AWS_SECRET_ACCESS_KEY: "SECRET-backend-aws-key",
    });
    // After the CLI's own directory (which the SDK prepends): this process's Node, for the policy analyzer.
    expect(up!.env.PATH?.split(":")[1]).toBe(process.execPath.replace(/\/node$/, ""));

    expect(out).toEqual({
      running: true,
      serverId: "101",
      publicIp: "203.0.113.5",
      terminalPort: 7681,
      volumeId: "201",
      volumeDevice: "/dev/disk/by-id/scsi-0HC_Volume_201",
      bucketName: "berth-a1",
      secretOutputs: {
        r2AccessKeyId: "SECRET-r2-access-key-id",
        r2SecretAccessKey: "SECRET-r2-secret-access-key",
      },
    });
  });

  it("derives a distinct, stable passphrase per stack", () => {
    expect(driver.stackPassphrase("a1")).toBe(driver.stackPassphrase("a1"));
    expect(driver.stackPassphrase("a1")).not.toBe(driver.stackPassphrase("a2"));
    expect(driver.stackPassphrase("a1")).not.toContain("SECRET-master-passphrase");
  });

  it("hibernate then wake: up on the existing stack, no init", async () => {
    fake.seedStack("ws-a1", upOutputs("a1", true).outputs);
    fake.script({ responses: { up: [upOutputs("a1", false), upOutputs("a1", true)] } });
    const stopped = await driver.apply(spec("a1"), "stop", new RecordingLog(), signal());
    expect(stopped).toMatchObject({ running: false, serverId: null, publicIp: null, volumeId: "201" });
    const woken = await driver.apply(spec("a1"), "start", new RecordingLog(), signal());
    expect(woken).toMatchObject({ running: true, serverId: "101", publicIp: "203.0.113.5" });
    const ups = fake.calls().filter((c) => c.command === "up");
    expect(ups.map((u) => argOf(u, "--message"))).toEqual(["berth stop", "berth start"]);
    expect(fake.commands()).not.toContain("stack init");
  });

  it("destroy: lifts protection with an up (no policy pack), destroys running the program, removes the stack", async () => {
    fake.seedStack("ws-a1", upOutputs("a1", false).outputs);
    fake.script({ responses: { up: upOutputs("a1", false) } });
    const log = new RecordingLog();
    await driver.destroy(spec("a1"), log, signal());
    expect(fake.commands()).toEqual([
      "stack select",
      "up",
      "stack output",
      "stack output",
      "stack history",
      "destroy",
      "stack history",
      "stack rm",
    ]);
    const up = fake.calls().find((c) => c.command === "up");
    expect(up!.argv).not.toContain("--policy-pack");
    const destroy = fake.calls().find((c) => c.command === "destroy");
    expect(destroy!.argv.slice(0, 3)).toEqual(["destroy", "--yes", "--skip-preview"]);
    expect(destroy!.argv).toContain("--run-program=true");
    expect(argOf(destroy, "--exec-kind")).toBe("auto.inline");
    expect(fake.calls().find((c) => c.command === "stack rm")!.argv).toEqual([
      "stack",
      "rm",
      "--yes",
      "ws-a1",
      "--non-interactive",
    ]);
    expect(fake.hasStack("ws-a1")).toBe(false);
    expect(log.stages).toEqual(["pulumi up (lift protection)", "empty bucket berth-a1", "pulumi destroy"]);
    // Emptied with the stack's own bucket-scoped keys, before the destroy.
    expect(fake.emptied).toEqual([
      {
        endpoint: "https://acct0123.r2.cloudflarestorage.com",
        bucket: "berth-a1",
        accessKeyId: "SECRET-r2-access-key-id",
        secretAccessKey: "SECRET-r2-secret-access-key",
      },
    ]);
    expect(log.lines).toContainEqual(["info", "deleted 3 objects from berth-a1"]);
  });

  it("destroy of a workspace that has no stack succeeds and says so", async () => {
    const log = new RecordingLog();
    await driver.destroy(spec("zz"), log, signal());
    expect(fake.commands()).toEqual(["stack select"]);
    expect(log.lines).toEqual([["info", "no stack ws-zz: nothing to destroy"]]);
  });

  it("never puts a secret on a command line", async () => {
    fake.script({ responses: { up: upOutputs("a1", true) } });
    await driver.apply(spec("a1"), "start", new RecordingLog(), signal());
    await driver.apply(spec("a1"), "stop", new RecordingLog(), signal());
    await driver.preview(spec("a1"), "start");
    await driver.repair("a1", new RecordingLog(), signal());
    await driver.destroy(spec("a1"), new RecordingLog(), signal());
    await driver.installPlugins();
    const calls = fake.calls();
    expect(calls.length).toBeGreaterThan(15);
    const secrets = [
      ...Object.values(SECRETS),
      "SECRET",
      driver.stackPassphrase("a1"),
      "SECRET-r2-secret-access-key",
    ];
    for (const call of calls) {
      for (const arg of call.argv) {
        for (const s of secrets) expect(arg, `${call.command}: ${arg}`).not.toContain(s);
      }
    }
  });

  it("streams engine events into the build log", async () => {
    const urn = (type: string, name: string) => `urn:pulumi:ws-a1::berth-workspaces::${type}::${name}`;
    const server = urn("berth:workspace:Workspace$hcloud:index/server:Server", "workspace-server");
    fake.script({
      responses: {
        up: {
          ...upOutputs("a1", true),
          events: [
            {
              resourcePreEvent: {
                metadata: {
                  op: "same",
                  urn: urn("pulumi:pulumi:Stack", "ws"),
                  type: "pulumi:pulumi:Stack",
                  provider: "",
                },
              },
            },
            {
              resourcePreEvent: {
                metadata: { op: "create", urn: server, type: "hcloud:index/server:Server", provider: "" },
              },
            },
            {
              diagnosticEvent: {
                urn: server,
                message: "\u001b[33mserver is slow\u001b[0m\n",
                color: "never",
                severity: "warning",
              },
            },
            {
              resOutputsEvent: {
                metadata: { op: "create", urn: server, type: "hcloud:index/server:Server", provider: "" },
              },
            },
            {
              policyEvent: {
                resourceUrn: server,
                message: "nope",
                color: "never",
                policyName: "p",
                policyPackName: "berth-baseline",
                policyPackVersion: "",
                policyPackVersionTag: "",
                enforcementLevel: "warning",
              },
            },
            {
              summaryEvent: {
                maybeCorrupt: false,
                durationSeconds: 42,
                resourceChanges: { create: 7, same: 1 },
                policyPacks: {},
              },
            },
          ],
        },
      },
    });
    const log = new RecordingLog();
    await driver.apply(spec("a1"), "start", log, signal());
    expect(log.stages).toEqual([
      "pulumi: select ws-a1",
      "pulumi up (start)",
      "create workspace-server (hcloud:index/server:Server)",
    ]);
    expect(log.lines).toEqual([
      ["warn", "workspace-server: server is slow"],
      ["info", "created workspace-server"],
      ["warn", "policy berth-baseline/p (workspace-server): nope"],
      ["info", "7 create in 42s"],
    ]);
  });

  it("preview returns the detailed diff of an existing stack, and 404s a missing one", async () => {
    fake.seedStack("ws-a1");
    const server =
      "urn:pulumi:ws-a1::berth-workspaces::berth:workspace:Workspace$hcloud:index/server:Server::workspace-server";
    fake.script({
      responses: {
        preview: {
          events: [
            {
              resourcePreEvent: {
                metadata: {
                  op: "update",
                  urn: server,
                  type: "hcloud:index/server:Server",
                  provider: "",
                  diffs: ["serverType"],
                  detailedDiff: { serverType: { diffKind: "update" as never, inputDiff: true } },
                },
              },
            },
          ],
        },
      },
    });
    const diff = await driver.preview(spec("a1"), "start");
    expect(diff).toEqual({
      workspaceId: "a1",
      changes: [
        {
          resource: "workspace-server",
          type: "hcloud:index/server:Server",
          op: "update",
          changedKeys: ["serverType"],
        },
      ],
    });
    const preview = fake.calls().find((c) => c.command === "preview");
    expect(argOf(preview, "--policy-pack")).toBe(DEFAULT_POLICY_PACK);
    await expect(driver.preview(spec("nope"), "start")).rejects.toBeInstanceOf(StackNotFoundError);
  });

  it("maps a held lock (DIY or Pulumi Cloud) to StackBusyError, retryable", async () => {
    fake.seedStack("ws-a1");
    for (const stderr of [
      "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file with `pulumi cancel`.",
      "error: [409] Conflict: Another update is currently in progress.",
    ]) {
      fake.script({ responses: { up: { exitCode: 255, stderr } } });
      const err = await driver
        .apply(spec("a1"), "start", new RecordingLog(), signal())
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StackBusyError);
      expect((err as StackBusyError).retryable).toBe(true);
    }
  });

  it("maps any other failure to a non-retryable DriverError carrying the CLI's error lines", async () => {
    fake.seedStack("ws-a1");
    fake.script({
      responses: {
        up: {
          exitCode: 255,
          stderr: "Updating...\nerror: hcloud: server type cx22 is unavailable in fsn1\n",
        },
      },
    });
    const err = await driver
      .apply(spec("a1"), "start", new RecordingLog(), signal())
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DriverError);
    expect(err).not.toBeInstanceOf(StackBusyError);
    expect((err as DriverError).retryable).toBe(false);
    expect((err as DriverError).message).toBe(
      "up ws-a1 failed: error: hcloud: server type cx22 is unavailable in fsn1",
    );
  });

  it("cancel: the signal interrupts a hanging up with SIGINT, and the work dir is removed", async () => {
    fake.seedStack("ws-a1");
    fake.script({ responses: { up: { hang: true } } });
    const ac = new AbortController();
    const pending = driver.apply(spec("a1"), "start", new RecordingLog(), ac.signal).catch((e: unknown) => e);
    await waitFor(() => fake.calls().some((c) => c.command === "up"));
    ac.abort();
    const err = await pending;
    expect(err).toBeInstanceOf(OperationCanceledError);
    expect(fake.records().filter((r) => r.kind === "signal")).toEqual([
      expect.objectContaining({ command: "up", signal: "SIGINT" }),
    ]);
    expect(readdirSync(fake.workRoot)).toEqual([]);
  });

  it("cancel during stack select of a destroy never lifts protection", async () => {
    fake.seedStack("ws-a1", upOutputs("a1", false).outputs);
    fake.script({ responses: { "stack select": { holdUntil: "go" }, up: upOutputs("a1", false) } });
    const ac = new AbortController();
    const pending = driver.destroy(spec("a1"), new RecordingLog(), ac.signal).catch((e: unknown) => e);
    await waitFor(() => fake.calls().some((c) => c.command === "stack select"));
    ac.abort();
    fake.release("go");
    expect(await pending).toBeInstanceOf(OperationCanceledError);
    // The SDK only listens for a *future* abort: an `up` started on an aborted signal would run to the end.
    expect(fake.commands()).toEqual(["stack select"]);
    expect(fake.emptied).toEqual([]);
  });

  it("cancel that lands while the SDK sets up an up still stops the CLI, and the op reports canceled", async () => {
    fake.seedStack("ws-a1");
    fake.script({ responses: { up: upOutputs("a1", true) } });
    const ac = new AbortController();
    // The abort arrives after the driver's last check and before the SDK spawns the CLI.
    const log = new RecordingLog();
    log.stage = (name: string) => {
      log.stages.push(name);
      if (name === "pulumi up (start)") ac.abort();
    };
    const err = await driver.apply(spec("a1"), "start", log, ac.signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OperationCanceledError);
    // No `up` ran to its end.
    expect(fake.records().filter((r) => r.kind === "exit" && r.command === "up" && r.code === 0)).toEqual([]);
    expect(readdirSync(fake.workRoot)).toEqual([]);
  });

  it("cancel while queued for a slot never starts the CLI", async () => {
    driver = new PulumiDriver(await fake.driverOptions({ maxConcurrentOps: 1 }));
    fake.seedStack("ws-a1");
    fake.seedStack("ws-a2");
    fake.script({ responses: { "up@ws-a1": { hang: true } } });
    const first = new AbortController();
    const running = driver
      .apply(spec("a1"), "start", new RecordingLog(), first.signal)
      .catch((e: unknown) => e);
    await waitFor(() => fake.calls().some((c) => c.command === "up"));
    const second = new AbortController();
    const queued = driver
      .apply(spec("a2"), "start", new RecordingLog(), second.signal)
      .catch((e: unknown) => e);
    expect(driver.load).toEqual({ running: 1, waiting: 1 });
    second.abort();
    expect(await queued).toBeInstanceOf(OperationCanceledError);
    expect(fake.calls().filter((c) => c.stack === "ws-a2")).toEqual([]);
    first.abort();
    expect(await running).toBeInstanceOf(OperationCanceledError);
  });

  it("works in a fresh work dir under workRoot per operation, and removes it", async () => {
    fake.script({ responses: { up: upOutputs("a1", true) } });
    await driver.apply(spec("a1"), "start", new RecordingLog(), signal());
    await driver.apply(spec("a1"), "stop", new RecordingLog(), signal());
    const ups = fake.calls().filter((c) => c.command === "up");
    expect(ups[0]!.cwd).not.toBe(ups[1]!.cwd);
    for (const c of fake.calls()) {
      expect(c.cwd.startsWith(`${fake.workRoot}/`)).toBe(true);
      expect(c.files).toContain("Pulumi.yaml");
      expect(existsSync(c.cwd)).toBe(false);
    }
    expect(readdirSync(fake.workRoot)).toEqual([]);
  });

  it("holds the global limit on concurrent operations", async () => {
    driver = new PulumiDriver(await fake.driverOptions({ maxConcurrentOps: 2 }));
    fake.script({ responses: { up: { ...upOutputs("x", true), holdUntil: "go" } } });
    const ids = ["c1", "c2", "c3", "c4", "c5"];
    const all = Promise.all(ids.map((id) => driver.apply(spec(id), "start", new RecordingLog(), signal())));
    // Two `up`s run and are held there; the other three wait for a slot, and no third CLI call starts.
    await waitFor(() => fake.calls().filter((c) => c.command === "up").length === 2);
    expect(driver.load).toEqual({ running: 2, waiting: 3 });
    fake.release("go");
    await all;
    // Each op's span: from its first CLI call to its last exit.
    const spans = ids.map((id) => {
      const mine = fake.records().filter((r) => r.stack === `ws-${id}`);
      return { start: Math.min(...mine.map((r) => r.t)), end: Math.max(...mine.map((r) => r.t)) };
    });
    const maxOverlap = Math.max(
      ...spans.map((s) => spans.filter((o) => o.start <= s.start && o.end > s.start).length),
    );
    expect(maxOverlap).toBe(2);
  });

  it("refuses a second operation on a workspace already busy in this process", async () => {
    fake.seedStack("ws-a1");
    fake.script({ responses: { up: { hang: true } } });
    const ac = new AbortController();
    const first = driver.apply(spec("a1"), "start", new RecordingLog(), ac.signal).catch((e: unknown) => e);
    await expect(driver.apply(spec("a1"), "stop", new RecordingLog(), signal())).rejects.toBeInstanceOf(
      StackBusyError,
    );
    await expect(driver.repair("a1", new RecordingLog(), signal())).rejects.toBeInstanceOf(StackBusyError);
    ac.abort();
    await first;
  });

  it("repair: cancel clears the lock, then refresh clears pending creates, without running the program", async () => {
    fake.seedStack("ws-a1");
    const log = new RecordingLog();
    await driver.repair("a1", log, signal());
    expect(fake.commands()).toEqual(["stack select", "cancel", "refresh", "stack history"]);
    const [, cancel, refresh] = fake.calls();
    expect(cancel!.argv).toEqual(["cancel", "--yes", "--stack", "ws-a1", "--non-interactive"]);
    expect(refresh!.argv.slice(0, 3)).toEqual(["refresh", "--skip-preview", "--yes"]);
    expect(refresh!.argv).toContain("--clear-pending-creates");
    expect(argOf(refresh, "--exec-kind")).toBe("auto.local");
    expect(log.stages).toEqual(["pulumi cancel", "pulumi refresh"]);
    await expect(driver.repair("nope", log, signal())).rejects.toBeInstanceOf(StackNotFoundError);
  });

  it("installs the provider plugins at the npm packages' versions", async () => {
    await driver.installPlugins();
    expect(fake.calls().map((c) => c.argv.slice(0, 5).join(" "))).toEqual([
      "plugin install resource hcloud v1.41.0",
      "plugin install resource cloudflare v6.22.1",
      "plugin install resource tailscale v0.29.1",
    ]);
  });
});

const waitFor = (cond: () => boolean) => waitUntil("the fake pulumi's calls", cond);
