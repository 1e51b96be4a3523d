import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  AGENT_ENV_PATH,
  CREDENTIALS_SOURCE_DIR,
  OPTIONAL_CREDENTIALS,
  REQUIRED_CREDENTIALS,
} from "../box/boot-config.ts";
import { parseUnit, type UnitFile, value, values } from "./systemd-unit.ts";
import { canVerify, systemctl, verify } from "./test/systemd-verify.ts";
import { PACKER_DIR } from "./test/tools.ts";

const UNIT_DIR = join(PACKER_DIR, "files", "systemd");
const UNITS = ["berth-agent.service", "berth-tmux.service", "berth-ttyd.service"];
const read = (rel: string) => readFileSync(join(PACKER_DIR, rel), "utf8");
const unit = (name: string): UnitFile => parseUnit(readFileSync(join(UNIT_DIR, name), "utf8"));
const SOCKET = "/run/berth-tmux/tmux.sock";

// Settings that give a unit a mount namespace of its own; a mount made inside one stays inside it.
const MOUNT_NAMESPACE_SETTINGS = [
  "ProtectSystem",
  "ProtectHome",
  "PrivateTmp",
  "PrivateDevices",
  "PrivateMounts",
  "ProtectProc",
  "ProtectKernelTunables",
  "ProtectKernelModules",
  "ProtectControlGroups",
  "ReadOnlyPaths",
  "ReadWritePaths",
  "InaccessiblePaths",
  "TemporaryFileSystem",
  "BindPaths",
  "BindReadOnlyPaths",
  "RootDirectory",
  "MountFlags",
];

/**
 * cloud-init's units as Debian 12 ships them (cloud-init 22.4.2-1+deb12u4), reduced to their ordering:
 * write_files and bootcmd run in cloud-init.service, runcmd in cloud-final.service, which comes after
 * multi-user.target. The agent unit must fit between them once the image enables it.
 */
const CLOUD_INIT_UNITS: Record<string, string> = {
  "cloud-init-local.service":
    "[Unit]\nDefaultDependencies=no\nBefore=network-pre.target sysinit.target\n[Service]\nType=oneshot\nExecStart=/usr/bin/cloud-init init --local\n[Install]\nWantedBy=cloud-init.target\n",
  "cloud-init.service":
    "[Unit]\nDefaultDependencies=no\nWants=cloud-init-local.service\nAfter=cloud-init-local.service\nBefore=network-online.target sysinit.target systemd-user-sessions.service\n[Service]\nType=oneshot\nExecStart=/usr/bin/cloud-init init\n[Install]\nWantedBy=cloud-init.target\n",
  "cloud-config.service":
    "[Unit]\nAfter=network-online.target\nWants=network-online.target\n[Service]\nType=oneshot\nExecStart=/usr/bin/cloud-init modules --mode=config\n[Install]\nWantedBy=cloud-init.target\n",
  "cloud-final.service":
    "[Unit]\nAfter=network-online.target cloud-config.service multi-user.target\nWants=network-online.target cloud-config.service\n[Service]\nType=oneshot\nExecStart=/usr/bin/cloud-init modules --mode=final\n[Install]\nWantedBy=cloud-init.target\n",
  "cloud-init.target": "[Unit]\nAfter=multi-user.target\n[Install]\nWantedBy=multi-user.target\n",
};

describe("systemd-analyze verify", () => {
  it.skipIf(!canVerify)("accepts the three units without a warning", () => {
    const texts = Object.fromEntries(UNITS.map((n) => [n, readFileSync(join(UNIT_DIR, n), "utf8")]));
    const result = verify(texts);
    expect(result.stdout + result.stderr).toBe("");
    expect(result.status).toBe(0);
  });

  it.skipIf(!canVerify || !systemctl)(
    "accepts the agent enabled in a boot with cloud-init's units: no ordering cycle through multi-user.target",
    () => {
      const agent = readFileSync(join(UNIT_DIR, "berth-agent.service"), "utf8");
      const result = verify({ ...CLOUD_INIT_UNITS, "berth-agent.service": agent }, [
        "berth-agent.service",
        "cloud-init.target",
      ]);
      expect(result.stdout + result.stderr).toBe("");
      expect(result.status).toBe(0);
    },
  );

  it.skipIf(!canVerify || !systemctl)(
    "reports the cycle an enabled agent ordered after cloud-final would make",
    () => {
      const agent = readFileSync(join(UNIT_DIR, "berth-agent.service"), "utf8").replace(
        /^After=(.*)$/m,
        "After=$1 cloud-final.service",
      );
      const result = verify({ ...CLOUD_INIT_UNITS, "berth-agent.service": agent }, [
        "berth-agent.service",
        "cloud-init.target",
      ]);
      expect(result.stderr).toContain("Found ordering cycle");
    },
  );

  it.skipIf(!canVerify)("reports a unit with an unknown key or a bad value", () => {
    const result = verify({
      "berth-bad.service": "[Service]\nExecStart=/opt/berth/bin/x\nNoNewPrivileges=maybe\nRestartt=always\n",
    });
    expect(result.stderr).toContain("Failed to parse boolean value");
    expect(result.stderr).toContain("Unknown key 'Restartt'");
  });

  it.runIf(!canVerify)("notes that systemd-analyze verify was skipped", () => {
    console.warn(
      "systemd-analyze or /usr/lib/systemd/system is missing: install the Debian package `systemd` to verify " +
        "units; the structural checks below still run",
    );
  });
});

describe("berth-agent.service", () => {
  const agent = unit("berth-agent.service");

  it("reads settings from the contract's environment file, never /etc/environment", () => {
    expect(values(agent, "Service", "EnvironmentFile")).toEqual([AGENT_ENV_PATH]);
    for (const name of UNITS)
      expect(readFileSync(join(UNIT_DIR, name), "utf8")).not.toContain("/etc/environment");
  });

  it("loads every required credential from its file, so a missing one fails the start", () => {
    const lines = values(agent, "Service", "LoadCredential");
    for (const name of REQUIRED_CREDENTIALS) {
      expect(lines).toContain(`${name}:${CREDENTIALS_SOURCE_DIR}/${name}`);
    }
  });

  it("loads every optional credential by name through /run/credstore, so a missing one is skipped", () => {
    const lines = values(agent, "Service", "LoadCredential");
    const tmpfiles = read("files/etc/tmpfiles.d/berth.conf");
    for (const name of OPTIONAL_CREDENTIALS) {
      expect(lines).toContain(name);
      expect(tmpfiles).toMatch(
        new RegExp(`^L\\+\\s+/run/credstore/${name}\\s+(-\\s+){4}${CREDENTIALS_SOURCE_DIR}/${name}$`, "m"),
      );
    }
    expect(lines).toHaveLength(REQUIRED_CREDENTIALS.length + OPTIONAL_CREDENTIALS.length);
  });

  it("stays in the host's mount namespace, so the volume it mounts is visible to everything else", () => {
    for (const key of MOUNT_NAMESPACE_SETTINGS) expect(value(agent, "Service", key), key).toBeUndefined();
  });

  it("runs the baked agent with the baked Node, restarts, and is skipped without its settings", () => {
    expect(value(agent, "Service", "ExecStart")).toBe(
      "/opt/berth/node/bin/node /opt/berth/agent/box/main.ts",
    );
    expect(value(agent, "Service", "Restart")).toBe("always");
    expect(value(agent, "Unit", "ConditionPathExists")).toBe(AGENT_ENV_PATH);
  });

  it("is enabled in the image, so a reboot starts it without cloud-init's runcmd", () => {
    expect(value(agent, "Install", "WantedBy")).toBe("multi-user.target");
    expect(read("scripts/70-units.sh")).toMatch(/^systemctl enable berth-agent\.service$/m);
    // Only the agent: tmux and ttyd have no [Install] and are started by it.
    expect(read("scripts/70-units.sh").match(/systemctl enable/g)).toHaveLength(1);
  });

  it("starts after cloud-init wrote its files and relocked the metadata service, under either unit name", () => {
    const after = values(agent, "Unit", "After").join(" ").split(/\s+/);
    expect(after).toEqual(expect.arrayContaining(["cloud-init.service", "cloud-init-network.service"]));
    // multi-user.target wants the enabled agent and cloud-final comes after multi-user.target: a cycle.
    expect(after).not.toContain("cloud-final.service");
    expect(after).not.toContain("cloud-init.target");
  });

  const tmpfilesSetup = "/usr/lib/systemd/system/systemd-tmpfiles-setup.service";
  it.skipIf(!existsSync(tmpfilesSetup))(
    "starts after systemd-tmpfiles has linked /run/berth (default dependencies, on this host's systemd)",
    () => {
      expect(value(agent, "Unit", "DefaultDependencies")).toBeUndefined();
      const setup = parseUnit(readFileSync(tmpfilesSetup, "utf8"));
      expect(values(setup, "Unit", "Before").join(" ").split(/\s+/)).toContain("sysinit.target");
      // A service with default dependencies is ordered after basic.target, which is after sysinit.target.
      const basic = parseUnit(readFileSync("/usr/lib/systemd/system/basic.target", "utf8"));
      expect(values(basic, "Unit", "After").join(" ").split(/\s+/)).toContain("sysinit.target");
      expect(value(setup, "Service", "ExecStart")).toMatch(/^systemd-tmpfiles .*--create.*--boot/);
    },
  );
});

describe("berth-tmux.service and berth-ttyd.service", () => {
  const tmux = unit("berth-tmux.service");
  const ttyd = unit("berth-ttyd.service");
  const ttydStart = read("files/bin/berth-ttyd-start");

  it("run tmux as claude and ttyd as its own unprivileged user, which tmux admits", () => {
    expect(value(tmux, "Service", "User")).toBe("claude");
    expect(value(ttyd, "Service", "User")).toBe("berth-ttyd");
    expect(value(ttyd, "Service", "ExecStart")).toBe("/opt/berth/bin/berth-ttyd-start");
    expect(value(ttyd, "Service", "CapabilityBoundingSet")).toBe("");
    expect(read("files/etc/berth/tmux.conf")).toMatch(/^server-access -a berth-ttyd$/m);
    // The socket's directory: owned by claude, setgid to ttyd's group, so ttyd's clients can connect.
    expect(read("files/etc/tmpfiles.d/berth.conf")).toMatch(
      /^d \/run\/berth-tmux 2710 claude berth-ttyd -$/m,
    );
    expect(read("scripts/00-base.sh")).toContain("--user-group berth-ttyd");
  });

  it("restart on their own and harden what does not break tmux", () => {
    for (const u of [tmux, ttyd]) {
      expect(value(u, "Service", "Restart")).toBe("always");
      expect(value(u, "Service", "NoNewPrivileges")).toBe("yes");
      expect(value(u, "Service", "ProtectProc")).toBe("invisible");
    }
    // The user's processes share /tmp with SSH sessions; ttyd's tmux clients do not need it.
    expect(value(tmux, "Service", "PrivateTmp")).toBeUndefined();
    expect(value(ttyd, "Service", "PrivateTmp")).toBe("yes");
  });

  it("meet on one tmux socket outside /tmp, the one the agent is told about", () => {
    expect(value(tmux, "Service", "ExecStart")).toBe(`/usr/bin/tmux -S ${SOCKET} -f /etc/berth/tmux.conf -D`);
    expect(value(tmux, "Service", "ExecStartPost")).toBe(`/opt/berth/bin/berth-tmux-socket ${SOCKET}`);
    const env = (u: UnitFile) => values(u, "Service", "Environment").join(" ");
    for (const u of [ttyd, unit("berth-agent.service")])
      expect(env(u)).toContain(`BERTH_TMUX_SOCKET=${SOCKET}`);
    // The server's environment is every pane's: it carries no BERTH_* setting (box/tmux/pane-environment.ts).
    expect(env(tmux)).not.toContain("BERTH_");
    expect(read("files/bin/berth-tmux-attach")).toContain(`BERTH_TMUX_SOCKET:-${SOCKET}`);
    expect(read("files/etc/profile.d/berth-tmux.sh")).toContain(`BERTH_TMUX_SOCKET=${SOCKET}`);
    expect(values(ttyd, "Service", "ReadWritePaths")).toEqual([dirname(SOCKET)]);
  });

  it("give ttyd its credential only as a systemd credential, and start tmux with it", () => {
    expect(values(ttyd, "Service", "LoadCredential")).toEqual([
      `ttyd-credential:${CREDENTIALS_SOURCE_DIR}/ttyd-credential`,
    ]);
    expect(value(ttyd, "Unit", "Requires")).toBe("berth-tmux.service");
    expect(ttydStart).toContain("--writable --url-arg --debug 3");
    expect(ttydStart).toMatch(
      /ttyd "\$\{args\[@\]\}" --credential "\$credential" \/opt\/berth\/bin\/berth-tmux-attach$/m,
    );
  });
});
