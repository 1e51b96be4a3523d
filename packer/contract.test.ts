/**
 * The three halves of the boot contract, checked against each other: what the stack's cloud-init renders,
 * what berth-agent.service loads, and what the agent's loadBootConfig accepts, on a first boot and again
 * after a reboot, when /run is empty and cloud-init writes nothing. systemd itself cannot run here, so its
 * rules are emulated (test/box-root.ts); packer/scripts/70-units.sh checks the credential rules on the
 * build server's real systemd, and e2e/scripts.test.ts the tmpfiles rules on the real systemd-tmpfiles.
 */
import { lstatSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  AGENT_ENV_PATH,
  type AgentCredentials,
  BOOT_FILES_DIR,
  BOOT_LINK,
  CREDENTIALS_SOURCE_DIR,
  loadBootConfig,
  parseAgentEnv,
} from "../box/boot-config.ts";
import { AGENT_UNIT, renderUserData, type UserDataInput } from "../stacks/workspace/cloud-init.ts";
import { parseUnit, value } from "./systemd-unit.ts";
import {
  applyTmpfiles,
  readIn,
  reboot,
  runBootcmd,
  startUnit,
  tree,
  type WriteFile,
  writeFiles,
} from "./test/box-root.ts";
import { PACKER_DIR } from "./test/tools.ts";

interface CloudConfig {
  bootcmd: (string | string[])[];
  write_files: WriteFile[];
  runcmd: string[][];
}

const required = {
  "agent-token": "contract-test-agent-token",
  "ttyd-credential": "berth:contract-test-pass",
  "restic-password": "contract-test-restic",
};
const all = {
  ...required,
  "r2-access-key-id": "contract-r2-id",
  "r2-secret-access-key": "contract-r2-secret",
  "tailscale-auth-key": "contract-tailnet-key",
};

const input = (credentials: AgentCredentials): UserDataInput => ({
  hostname: "berth-ws-contract",
  settings: {
    BERTH_WORKSPACE_ID: "ws-contract",
    BERTH_CONTROL_PLANE_URL: "https://api.berth.example/agent",
    BERTH_VOLUME_DEVICE: "/dev/disk/by-id/scsi-0HC_Volume_1",
  },
  credentials,
});

const agentUnit = parseUnit(readFileSync(join(PACKER_DIR, "files/systemd", AGENT_UNIT), "utf8"));
const TMPFILES = readFileSync(join(PACKER_DIR, "files/etc/tmpfiles.d/berth.conf"), "utf8");

interface Boot {
  /** cloud-init's bootcmd is not ordered after systemd-tmpfiles-setup.service: either may run first. */
  order?: "tmpfiles-first" | "cloud-init-first";
  tmpfiles?: string;
  /** The userData as rendered, or edited to show what a test breaks. */
  config?: (config: CloudConfig) => CloudConfig;
}

/** A first boot: tmpfiles.d and cloud-init's bootcmd, then write_files. Returns the scratch root. */
function provision(userData: string, boot: Boot = {}) {
  const config = (boot.config ?? ((c) => c))(parse(userData) as CloudConfig);
  const root = mkdtempSync(join(tmpdir(), "berth-contract-"));
  const tmpfiles = () => applyTmpfiles(root, boot.tmpfiles ?? TMPFILES);
  if (boot.order !== "cloud-init-first") tmpfiles();
  const bootcmd = runBootcmd(root, config.bootcmd);
  if (boot.order === "cloud-init-first") tmpfiles();
  writeFiles(root, config.write_files);
  return { root, config, bootcmd };
}

/** Every later boot: /run starts empty, tmpfiles.d and bootcmd run again, write_files does not. */
function rebootBox(root: string, config: CloudConfig, boot: Boot = {}) {
  reboot(root);
  applyTmpfiles(root, boot.tmpfiles ?? TMPFILES);
  return runBootcmd(root, config.bootcmd);
}

/** berth-agent.service's start, then the agent's own loader on what the unit was given. */
function startAgent(root: string) {
  const start = startUnit(root, AGENT_UNIT, agentUnit);
  if (start.state !== "started") throw new Error(`${AGENT_UNIT} ${start.state}: ${JSON.stringify(start)}`);
  return loadBootConfig(parseAgentEnv(readFileSync(start.envFile, "utf8")), start.credentialsDir);
}

const dropLink = (config: CloudConfig): CloudConfig => ({
  ...config,
  bootcmd: config.bootcmd.filter((c) => !JSON.stringify(c).includes("ln -sT")),
});
const TMPFILES_WITHOUT_LINK = TMPFILES.replace(/^L \/run\/berth .*$/m, "");

describe("cloud-init → berth-agent.service → loadBootConfig, first boot", () => {
  it("starts the unit the image ships, with the env file the unit reads", () => {
    const { config } = provision(renderUserData(input(required)));
    expect(config.runcmd.flat()).toContain(AGENT_UNIT);
    expect(value(agentUnit, "Service", "EnvironmentFile")).toBe(AGENT_ENV_PATH);
  });

  it("delivers only the required secrets when no optional one is rendered", () => {
    const loaded = startAgent(provision(renderUserData(input(required))).root);
    expect(loaded.credentials).toEqual(required);
    expect(loaded.settings.BERTH_HOSTNAME).toBe("berth-ws-contract");
  });

  it("delivers every optional secret the renderer writes", () => {
    expect(startAgent(provision(renderUserData(input(all))).root).credentials).toEqual(all);
  });

  it("fails the unit, as systemd would, when a required secret file is missing", () => {
    const text = renderUserData(input(required)).replace(
      "/run/berth/credentials/restic-password",
      "/run/berth/elsewhere",
    );
    expect(() => startAgent(provision(text).root)).toThrow(/restic-password is missing/);
  });

  it("skips the unit, which the image enables, on a server cloud-init has not provisioned", () => {
    const root = mkdtempSync(join(tmpdir(), "berth-contract-"));
    applyTmpfiles(root, TMPFILES);
    expect(startUnit(root, AGENT_UNIT, agentUnit)).toEqual({
      state: "skipped",
      condition: AGENT_ENV_PATH,
    });
  });
});

describe("cloud-init → berth-agent.service → loadBootConfig, after a reboot", () => {
  for (const order of ["tmpfiles-first", "cloud-init-first"] as const) {
    it(`loads the same settings and secrets with /run emptied and no write_files (${order} on the first boot)`, () => {
      const { root, config, bootcmd } = provision(renderUserData(input(all)), { order });
      expect(bootcmd).toEqual({ metadataLocked: true, failures: [] });
      const first = startAgent(root);
      // bootcmd runs at every boot, so the metadata service is locked again before the agent starts.
      expect(rebootBox(root, config)).toEqual({ metadataLocked: true, failures: [] });
      expect(startAgent(root)).toEqual(first);
      expect(first.credentials).toEqual(all);
      // And a second reboot, in case the first one left something behind that the second depends on.
      rebootBox(root, config);
      expect(startAgent(root)).toEqual(first);
    });
  }

  it("keeps the files root-only on the root disk, and nothing of them in /run but links", () => {
    const { root, config } = provision(renderUserData(input(all)));
    rebootBox(root, config);
    expect(lstatSync(join(root, BOOT_LINK)).isSymbolicLink()).toBe(true);
    const disk = tree(root, BOOT_FILES_DIR.slice(1));
    expect(disk.filter((e) => e.type === "dir")).toEqual([
      { path: `${BOOT_FILES_DIR.slice(1)}/credentials`, type: "dir", mode: 0o700 },
    ]);
    expect(lstatSync(join(root, BOOT_FILES_DIR)).mode & 0o7777).toBe(0o700);
    const files = disk.filter((e) => e.type === "file");
    expect(files.map((e) => `/${e.path}`).sort()).toEqual(
      config.write_files.map((f) => f.path.replace(BOOT_LINK, BOOT_FILES_DIR)).sort(),
    );
    for (const f of files) expect(f.mode, f.path).toBe(0o600);
    // The unit's credential copies are systemd's own (root-only, per unit); nothing else in /run is a file.
    expect(
      tree(root, "run").filter((e) => e.type === "file" && !e.path.startsWith("run/credentials/")),
    ).toEqual([]);
    for (const f of config.write_files) expect(readIn(root, f.path)).toBe(f.content);
    expect(config.write_files.every((f) => f.path.startsWith(`${BOOT_LINK}/`))).toBe(true);
    expect(CREDENTIALS_SOURCE_DIR.startsWith(`${BOOT_LINK}/`)).toBe(true);
  });

  it("skips the unit after a reboot when /run/berth is a plain directory (the defect this layout fixes)", () => {
    const old = { config: dropLink, tmpfiles: TMPFILES_WITHOUT_LINK };
    const { root, config } = provision(renderUserData(input(required)), old);
    expect(startAgent(root).credentials).toEqual(required);
    rebootBox(root, config, old);
    expect(startUnit(root, AGENT_UNIT, agentUnit)).toMatchObject({ state: "skipped" });
  });

  it("keeps the files when only one of tmpfiles.d and bootcmd makes the link", () => {
    for (const boot of [{ config: dropLink }, { tmpfiles: TMPFILES_WITHOUT_LINK }]) {
      const { root, config } = provision(renderUserData(input(required)), {
        ...boot,
        order: "cloud-init-first",
      });
      rebootBox(root, config, boot);
      expect(startAgent(root).credentials).toEqual(required);
    }
  });
});
