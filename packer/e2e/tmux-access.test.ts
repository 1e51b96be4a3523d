/**
 * The terminal's two-user setup on a real tmux: a server owned by the box user, started with the image's
 * tmux.conf in a setgid socket directory, admits ttyd's user, and the panes it creates for that client run
 * as the box user. Stand-ins: `daemon` plays claude and `nobody` plays berth-ttyd (real users need not
 * exist on a test machine). Needs root (to switch users) plus tmux and setpriv; skipped otherwise.
 */
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdtempSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PACKER_DIR, run, which } from "../test/tools.ts";

const tmux = which("tmux");
const setpriv = which("setpriv");
const canRun = process.getuid?.() === 0 && tmux !== undefined && setpriv !== undefined;

const OWNER = { name: "daemon", uid: 1, gid: 1 };
const CLIENT = { name: "nobody", uid: 65534, gid: 65534 };

// The stand-ins' login shell is nologin; tmux runs pane commands with the shell from SHELL.
const as = (user: { name: string; gid: number }, args: string[]) =>
  run(
    setpriv!,
    [
      `--reuid=${user.name}`,
      `--regid=${user.gid}`,
      "--init-groups",
      "--reset-env",
      "env",
      "SHELL=/bin/sh",
      ...args,
    ],
    { cwd: "/" },
  );

describe.runIf(canRun)("tmux server-access for ttyd's user", () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-tmux-acl-"));
  const socketDir = join(dir, "sock");
  const socket = join(socketDir, "tmux.sock");
  const conf = join(dir, "tmux.conf");
  const marker = join(dir, "pane-user");

  // Same layout as the image: a 2710 owner:client-group directory, the shipped config with the stand-in user.
  run("install", ["-d", "-m", "2710", "-o", String(OWNER.uid), "-g", String(CLIENT.gid), socketDir]);
  chmodSync(dir, 0o755);
  const shipped = readFileSync(join(PACKER_DIR, "files/etc/berth/tmux.conf"), "utf8");
  // The helper runs as another user: from a copy that user can reach, even when the checkout sits in a
  // private directory (root's home, mktemp -d).
  const socketHelper = join(dir, "berth-tmux-socket");
  copyFileSync(join(PACKER_DIR, "files/bin/berth-tmux-socket"), socketHelper);
  chmodSync(socketHelper, 0o755);
  writeFileSync(conf, shipped.replaceAll("berth-ttyd", CLIENT.name));
  writeFileSync(marker, "");
  chownSync(marker, OWNER.uid, OWNER.gid);

  afterAll(() => {
    as(OWNER, [tmux!, "-S", socket, "kill-server"]);
  });

  it("admits the client user once the socket is opened to its group, and panes run as the owner", () => {
    expect(
      as(OWNER, [tmux!, "-S", socket, "-f", conf, "new-session", "-d", "-s", "main", "sleep 600"]).status,
    ).toBe(0);
    expect(statSync(socket).gid).toBe(CLIENT.gid);

    // tmux creates the socket 0600: the client is refused until the helper opens it.
    const before = as(CLIENT, [tmux!, "-S", socket, "list-sessions", "-F", "#{session_name}"]);
    expect(before.stdout).toBe("");

    const helper = as(OWNER, [socketHelper, socket, "2"]);
    expect(helper.status).toBe(0);
    const after = as(CLIENT, [tmux!, "-S", socket, "list-sessions", "-F", "#{session_name}"]);
    expect(after.stdout.trim()).toBe("main");

    const created = as(CLIENT, [
      tmux!,
      "-S",
      socket,
      "new-session",
      "-d",
      "-s",
      "from-ttyd",
      `id -un > ${marker}`,
    ]);
    expect(created.status).toBe(0);
    for (let i = 0; i < 50 && readFileSync(marker, "utf8") === ""; i++) run("sleep", ["0.1"]);
    expect(readFileSync(marker, "utf8").trim()).toBe(OWNER.name);
  });

  it("refuses a user the config does not name, even with socket access", () => {
    const other = mkdtempSync(join(tmpdir(), "berth-tmux-noacl-"));
    chmodSync(other, 0o755);
    run("install", ["-d", "-m", "2710", "-o", String(OWNER.uid), "-g", String(CLIENT.gid), join(other, "d")]);
    const path = join(other, "d", "s");
    expect(as(OWNER, [tmux!, "-S", path, "-f", "/dev/null", "new-session", "-d", "-s", "main"]).status).toBe(
      0,
    );
    expect(as(OWNER, [socketHelper, path, "2"]).status).toBe(0);
    const refused = as(CLIENT, [tmux!, "-S", path, "list-sessions", "-F", "#{session_name}"]);
    as(OWNER, [tmux!, "-S", path, "kill-server"]);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toContain("access not allowed");
  });
});

describe.runIf(!canRun)("tmux server-access for ttyd's user", () => {
  it("is skipped", () => {
    console.warn(
      "tmux access test skipped: needs root plus the Debian packages tmux and util-linux (setpriv)",
    );
  });
});
