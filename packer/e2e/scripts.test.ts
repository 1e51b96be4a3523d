import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { ATTACH_ENDED_MARKER } from "../../box/terminal/protocol.ts";
import { applyTmpfiles, readIn, reboot, tree } from "../test/box-root.ts";
import { PACKER_DIR, REPO_DIR, run, which } from "../test/tools.ts";

const LIB = join(PACKER_DIR, "scripts/lib.sh");
const CHECKER = join(PACKER_DIR, "scripts/check-no-secrets.sh");
const ATTACH = join(PACKER_DIR, "files/bin/berth-tmux-attach");
const TTYD_START = join(PACKER_DIR, "files/bin/berth-ttyd-start");
const FAKE_TAILSCALE_KEY = ["tskey", "auth", "kTESTONLY0000CNTRL-notarealkey"].join("-");
const FAKE_CREDENTIAL = ["berth", "Kx7Wq2-fake-ttyd-pass"].join(":");

const scratch = (prefix: string) => mkdtempSync(join(tmpdir(), `berth-${prefix}-`));

function put(root: string, rel: string, content: string) {
  const path = join(root, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
}

/** A directory of stub executables that record their argv, one line per argument. */
function stubs(names: string[]): { bin: string; argvOf: (name: string) => string } {
  const bin = scratch("stubs");
  for (const name of names) {
    const path = join(bin, name);
    writeFileSync(path, `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > "${bin}/${name}.argv"\n`);
    chmodSync(path, 0o755);
  }
  return { bin, argvOf: (name) => run("cat", [join(bin, `${name}.argv`)]).stdout };
}

const bash = (script: string, env: NodeJS.ProcessEnv = {}) =>
  run("bash", ["-c", script], { env: { PATH: process.env.PATH, ...env } });

describe("scripts/lib.sh", () => {
  it("refuses to install when a checksum is missing or malformed, before downloading anything", () => {
    for (const sum of ["", "abc", "F".repeat(64)]) {
      const result = bash(`. '${LIB}'; fetch_verified https://example.invalid/x '${sum}' /nonexistent/x`);
      expect(result.status).toBe(1);
      expect(result.stderr).toContain("refusing to install it unverified");
    }
  });

  it("accepts a file whose SHA-256 matches the pin and rejects one that does not", () => {
    const dir = scratch("sha");
    const file = join(dir, "artifact");
    writeFileSync(file, "hello\n");
    const good = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    expect(bash(`. '${LIB}'; verify_sha256 '${file}' ${good}`).status).toBe(0);
    const bad = bash(`. '${LIB}'; verify_sha256 '${file}' ${"0".repeat(64)}`);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("checksum mismatch for artifact");
  });

  it("names a pin the template forgot to pass", () => {
    const result = bash(`. '${LIB}'; require_env NODE_VERSION`);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("NODE_VERSION is not set");
  });
});

describe("scripts/check-no-secrets.sh", () => {
  const clean = () => {
    const root = scratch("image");
    put(root, "etc/machine-id", "");
    put(root, "etc/hostname", "localhost\n");
    put(root, "root/.profile", "# ~/.profile\n");
    put(root, "opt/berth/agent/node_modules/some-pkg/test/key.pem", "-----BEGIN RSA PRIVATE KEY-----\n");
    return root;
  };

  it("passes a clean tree (test keys inside node_modules are not the image's secrets)", () => {
    const result = run(CHECKER, [clean()]);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
  });

  it("passes the agent as 60-agent.sh installs it (box/ without tests), so the build's final scan does not trip on it", () => {
    const root = clean();
    const agentDir = join(root, "opt/berth/agent");
    mkdirSync(agentDir, { recursive: true });
    // The very list 60-agent.sh installs (test, fake and bench code left out).
    expect(run(join(PACKER_DIR, "scripts/agent-files.sh"), [REPO_DIR, agentDir]).status).toBe(0);
    const result = run(CHECKER, [root]);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
  });

  const leaks: [string, string, string][] = [
    ["a Tailscale key in a file", "root/notes.txt", `key ${FAKE_TAILSCALE_KEY}\n`],
    ["the build's authorized_keys", "root/.ssh/authorized_keys", "ssh-ed25519 AAAA build\n"],
    ["an SSH host key", "etc/ssh/ssh_host_ed25519_key", "x\n"],
    ["a shell history", "home/claude/.bash_history", "ls\n"],
    ["Tailscale's node state", "var/lib/tailscale/tailscaled.state", "{}\n"],
    ["a written credential", "run/berth/credentials/agent-token", "x\n"],
    ["a credential persisted for reboots", "var/lib/berth/boot/credentials/restic-password", "x\n"],
    ["the agent's persisted settings", "var/lib/berth/boot/agent.env", "BERTH_WORKSPACE_ID=ws-1\n"],
    ["a non-empty machine-id", "etc/machine-id", "0123456789abcdef0123456789abcdef\n"],
    ["a shared random seed", "var/lib/systemd/random-seed", "x"],
    ["an npm token", "root/.npmrc", "//registry.npmjs.org/:_authToken=x\n"],
    ["a secret in /etc/environment", "etc/environment", "BERTH_AGENT_TOKEN=x\n"],
  ];
  for (const [what, rel, content] of leaks) {
    it(`fails on ${what}, naming the file but not its content`, () => {
      const root = clean();
      put(root, rel, content);
      const result = run(CHECKER, [root]);
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(`/${rel}`);
      expect(result.stderr).not.toContain(FAKE_TAILSCALE_KEY);
    });
  }
});

describe("files/bin/berth-tmux-attach", () => {
  it("asks the agent to ensure the session, attaches on the berth socket, and says when tmux ended", () => {
    const { bin, argvOf } = stubs(["tmux", "curl"]);
    const result = run(ATTACH, ["main-1"], {
      env: { PATH: `${bin}:/usr/bin:/bin`, TMUX: "/x,1,0", BERTH_AGENT_PORT: "17690" },
    });
    expect(result.status).toBe(0);
    expect(argvOf("curl")).toContain("http://127.0.0.1:17690/sessions/main-1/ensure\n");
    expect(argvOf("tmux").split("\n")).toEqual([
      "-S",
      "/run/berth-tmux/tmux.sock",
      "new-session",
      "-A",
      "-s",
      "main-1",
      "",
    ]);
    // The same bytes the relay looks for (box/terminal/protocol.ts), as the last output.
    expect(result.stdout.endsWith(ATTACH_ENDED_MARKER)).toBe(true);
  });

  it("attaches anyway when the agent cannot be asked, and passes tmux's failure on without the marker", () => {
    const { bin } = stubs(["tmux", "curl"]);
    writeFileSync(join(bin, "curl"), "#!/bin/sh\nexit 7\n");
    const agentDown = run(ATTACH, ["main-1"], { env: { PATH: `${bin}:/usr/bin:/bin` } });
    expect(agentDown.status).toBe(0);
    expect(agentDown.stderr).toContain("could not prepare the session; attaching anyway");
    expect(run("test", ["-e", join(bin, "tmux.argv")]).status).toBe(0);

    writeFileSync(join(bin, "tmux"), "#!/bin/sh\nexit 1\n");
    const tmuxFailed = run(ATTACH, ["main-1"], { env: { PATH: `${bin}:/usr/bin:/bin` } });
    expect(tmuxFailed.status).toBe(1);
    expect(tmuxFailed.stdout).not.toContain(ATTACH_ENDED_MARKER);
  });

  for (const args of [[], ["x#(touch /tmp/pwned)"], ["UPPER"], ["a".repeat(33)], ["a", "b"]]) {
    it(`refuses ${JSON.stringify(args)} without running tmux`, () => {
      const { bin } = stubs(["tmux", "curl"]);
      const result = run(ATTACH, args, { env: { PATH: `${bin}:/usr/bin:/bin` } });
      expect(result.status).toBe(2);
      expect(result.stderr).toContain("session name");
      expect(run("test", ["-e", join(bin, "tmux.argv")]).status).toBe(1);
      expect(run("test", ["-e", join(bin, "curl.argv")]).status).toBe(1);
    });
  }
});

describe("files/bin/berth-ttyd-start", () => {
  const start = (credential: string | undefined, env: NodeJS.ProcessEnv = {}) => {
    const { bin, argvOf } = stubs(["ttyd"]);
    const creds = scratch("creds");
    if (credential !== undefined) writeFileSync(join(creds, "ttyd-credential"), credential);
    const result = run(TTYD_START, [], {
      env: { PATH: `${bin}:/usr/bin:/bin`, CREDENTIALS_DIRECTORY: creds, ...env },
    });
    return {
      result,
      argv: () =>
        argvOf("ttyd")
          .split("\n")
          .filter((a) => a !== ""),
    };
  };

  it("starts ttyd writable, with url args, quiet logs and the credential", () => {
    const { result, argv } = start(`${FAKE_CREDENTIAL}\n`);
    expect(result.status).toBe(0);
    expect(argv()).toEqual([
      "--port",
      "7681",
      "--writable",
      "--url-arg",
      "--debug",
      "3",
      "--credential",
      FAKE_CREDENTIAL,
      "/opt/berth/bin/berth-tmux-attach",
    ]);
  });

  it("binds the configured port and interface", () => {
    const { argv } = start(FAKE_CREDENTIAL, { BERTH_TTYD_PORT: "17681", BERTH_TTYD_HOST: "100.64.0.7" });
    expect(argv()).toEqual(expect.arrayContaining(["17681", "--interface", "100.64.0.7"]));
  });

  it("refuses a credential that is not user:password without printing it", () => {
    const { result } = start("justapassword-Kx7Wq2");
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("user:password");
    expect(result.stderr).not.toContain("Kx7Wq2");
  });

  it("refuses to run outside its unit or with an empty credential", () => {
    expect(start(undefined, { CREDENTIALS_DIRECTORY: "" }).result.stderr).toContain("berth-ttyd.service");
    expect(start("").result.status).toBe(1);
  });
});

const tmpfiles = which("systemd-tmpfiles");
// The image's users (claude, berth-ttyd) do not exist here; root stands in so tmpfiles can resolve them.
// units.test.ts pins the exact owner line.
const TMPFILES_CONF = readFileSync(join(PACKER_DIR, "files/etc/tmpfiles.d/berth.conf"), "utf8").replaceAll(
  " claude berth-ttyd ",
  " root root ",
);
const SETUP_UNIT = "/usr/lib/systemd/system/systemd-tmpfiles-setup.service";

/** The arguments this host's systemd passes to systemd-tmpfiles at boot: the same systemd (252) as the box. */
function bootArgs(): string[] {
  const unit = existsSync(SETUP_UNIT) ? readFileSync(SETUP_UNIT, "utf8") : "";
  const exec = /^ExecStart=\S*systemd-tmpfiles (.*)$/m.exec(unit)?.[1];
  return exec ? exec.split(/\s+/) : ["--create", "--remove", "--boot"];
}

/** The real systemd-tmpfiles on a scratch root, with berth.conf only. */
function systemdTmpfiles(root: string, args: string[]) {
  const conf = join(mkdtempSync(join(tmpdir(), "berth-tmpfiles-conf-")), "berth.conf");
  writeFileSync(conf, TMPFILES_CONF);
  return run(tmpfiles!, [`--root=${root}`, ...args, conf]);
}

describe("files/etc/tmpfiles.d/berth.conf", () => {
  it.skipIf(!tmpfiles)(
    "links /run/berth to root-only directories on the root disk, and the credstore to them",
    () => {
      const root = scratch("tmpfiles");
      const result = systemdTmpfiles(root, bootArgs());
      expect(result.stderr).toBe("");
      for (const dir of ["var/lib/berth/boot", "var/lib/berth/boot/credentials", "run/credstore"]) {
        expect(lstatSync(join(root, dir)).mode & 0o7777, dir).toBe(0o700);
      }
      expect(readlinkSync(join(root, "run/berth"))).toBe("/var/lib/berth/boot");
      expect(lstatSync(join(root, "run/berth-tmux")).mode & 0o7777).toBe(0o2710);
      expect(readlinkSync(join(root, "run/credstore/tailscale-auth-key"))).toBe(
        "/run/berth/credentials/tailscale-auth-key",
      );
    },
  );

  it.skipIf(!tmpfiles)(
    "brings the link back after a reboot and never removes, ages out or opens up cloud-init's files",
    () => {
      const root = scratch("tmpfiles-reboot");
      expect(systemdTmpfiles(root, bootArgs()).stderr).toBe("");
      // What cloud-init's write_files leaves, written where the link points.
      const disk = join(root, "var/lib/berth/boot");
      writeFileSync(join(disk, "agent.env"), "BERTH_WORKSPACE_ID=ws-1\n", { mode: 0o600 });
      writeFileSync(join(disk, "credentials/agent-token"), "token", { mode: 0o600 });
      const before = tree(root, "var");
      // A later change of mode must be undone at boot, not kept.
      chmodSync(disk, 0o755);

      reboot(root);
      expect(systemdTmpfiles(root, bootArgs()).stderr).toBe("");
      expect(systemdTmpfiles(root, ["--clean"]).stderr).toBe("");
      expect(tree(root, "var")).toEqual(before);
      expect(readlinkSync(join(root, "run/berth"))).toBe("/var/lib/berth/boot");
      expect(readIn(root, "/run/berth/credentials/agent-token")).toBe("token");
      expect(readIn(root, "/run/berth/agent.env")).toContain("ws-1");
    },
  );

  it.skipIf(!tmpfiles)(
    "leaves a directory already at /run/berth, and what is in it, alone (L, not L+)",
    () => {
      const root = scratch("tmpfiles-dir");
      mkdirSync(join(root, "run/berth"), { recursive: true, mode: 0o700 });
      writeFileSync(join(root, "run/berth/agent.env"), "x\n");
      systemdTmpfiles(root, bootArgs());
      expect(lstatSync(join(root, "run/berth")).isDirectory()).toBe(true);
      expect(readFileSync(join(root, "run/berth/agent.env"), "utf8")).toBe("x\n");
    },
  );

  it.skipIf(!tmpfiles)("is what contract.test.ts's emulation of it produces", () => {
    const real = scratch("tmpfiles-real");
    const emulated = scratch("tmpfiles-emulated");
    expect(systemdTmpfiles(real, bootArgs()).stderr).toBe("");
    applyTmpfiles(emulated, TMPFILES_CONF);
    expect(tree(emulated, "")).toEqual(tree(real, ""));
    expect(tree(real, "").length).toBeGreaterThan(5);
  });
});

describe("files/bin/berth-tmux-socket", () => {
  const SOCKET_HELPER = join(PACKER_DIR, "files/bin/berth-tmux-socket");

  it("opens the server's socket to its group once it exists", async () => {
    const dir = scratch("socket");
    const path = join(dir, "tmux.sock");
    const server = createServer();
    await new Promise<void>((ok) => server.listen(path, ok));
    try {
      chmodSync(path, 0o600);
      const result = run(SOCKET_HELPER, [path, "2"]);
      expect(result.status).toBe(0);
      expect(lstatSync(path).mode & 0o777).toBe(0o660);
    } finally {
      server.close();
    }
  });

  it("fails, naming the socket, when the server never creates it", () => {
    const result = run(SOCKET_HELPER, [join(scratch("socket"), "missing.sock"), "1"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("missing.sock did not appear");
  });
});
