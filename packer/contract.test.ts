/**
 * The three halves of the boot contract, checked against each other: what the stack's cloud-init renders,
 * what berth-agent.service loads, and what the agent's loadBootConfig accepts. systemd itself cannot run
 * here, so its credential rules are emulated (an absolute path must exist; a bare name is looked up in
 * /run/credstore and skipped when absent). packer/scripts/70-units.sh checks the same rules on the build
 * server's real systemd.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { AGENT_ENV_PATH, type AgentCredentials, loadBootConfig, parseAgentEnv } from "../box/boot-config.ts";
import { AGENT_UNIT, renderUserData, type UserDataInput } from "../stacks/workspace/cloud-init.ts";
import { parseUnit, value, values } from "./systemd-unit.ts";
import { PACKER_DIR } from "./test/tools.ts";

interface CloudConfig {
  bootcmd: (string | string[])[];
  write_files: { path: string; permissions: string; content: string }[];
  runcmd: string[][];
}

const required = {
  "agent-token": "contract-test-agent-token",
  "ttyd-credential": "berth:contract-test-pass",
  "restic-password": "contract-test-restic",
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
const tmpfilesLinks = new Map(
  [
    ...readFileSync(join(PACKER_DIR, "files/etc/tmpfiles.d/berth.conf"), "utf8").matchAll(
      /^L\+?\s+(\S+)(?:\s+\S+){4}\s+(\S+)$/gm,
    ),
  ].map((m) => [m[1]!, m[2]!]),
);

/** Lays the rendered files out under a scratch root, then builds the unit's $CREDENTIALS_DIRECTORY. */
function boot(userData: string) {
  const config = parse(userData) as CloudConfig;
  const root = mkdtempSync(join(tmpdir(), "berth-contract-"));
  for (const file of config.write_files) {
    mkdirSync(join(root, dirname(file.path)), { recursive: true });
    writeFileSync(join(root, file.path), file.content, { mode: Number.parseInt(file.permissions, 8) });
  }
  for (const [link, target] of tmpfilesLinks) {
    mkdirSync(join(root, dirname(link)), { recursive: true });
    symlinkSync(join(root, target), join(root, link));
  }

  const credentialsDir = join(root, "run/credentials", AGENT_UNIT);
  mkdirSync(credentialsDir, { recursive: true });
  for (const line of values(agentUnit, "Service", "LoadCredential")) {
    const [id, path] = line.split(":") as [string, string | undefined];
    const source = path ?? `/run/credstore/${id}`;
    if (!existsSync(join(root, source))) {
      if (path !== undefined) throw new Error(`${AGENT_UNIT} would fail: ${path} is missing`);
      continue;
    }
    copyFileSync(join(root, source), join(credentialsDir, id));
  }
  const envFile = value(agentUnit, "Service", "EnvironmentFile")!;
  const env = parseAgentEnv(readFileSync(join(root, envFile), "utf8"));
  return { config, loaded: loadBootConfig(env, credentialsDir) };
}

describe("cloud-init → berth-agent.service → loadBootConfig", () => {
  it("starts the unit the image ships, with the env file the unit reads", () => {
    const { config } = boot(renderUserData(input(required)));
    expect(config.runcmd.flat()).toContain(AGENT_UNIT);
    expect(value(agentUnit, "Service", "EnvironmentFile")).toBe(AGENT_ENV_PATH);
  });

  it("delivers only the required secrets when no optional one is rendered", () => {
    const { loaded } = boot(renderUserData(input(required)));
    expect(loaded.credentials).toEqual(required);
    expect(loaded.settings.BERTH_HOSTNAME).toBe("berth-ws-contract");
  });

  it("delivers every optional secret the renderer writes", () => {
    const all = {
      ...required,
      "r2-access-key-id": "contract-r2-id",
      "r2-secret-access-key": "contract-r2-secret",
      "tailscale-auth-key": "contract-tailnet-key",
    };
    expect(boot(renderUserData(input(all))).loaded.credentials).toEqual(all);
  });

  it("fails the unit, as systemd would, when a required secret file is missing", () => {
    const text = renderUserData(input(required)).replace(
      "/run/berth/credentials/restic-password",
      "/run/berth/elsewhere",
    );
    expect(() => boot(text)).toThrow(/restic-password is missing/);
  });
});
