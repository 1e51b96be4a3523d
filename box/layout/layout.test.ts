import { execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ensureHomeLink } from "./home-link.ts";
import { ensureLayout, LayoutError, layoutPaths, STARTER_BASHRC } from "./workspace-layout.ts";

const root = () => mkdtempSync(join(tmpdir(), "berth-layout-"));
const isRoot = process.getuid?.() === 0;

describe("ensureLayout", () => {
  it("creates the seed's tree with .ssh 0700, then changes nothing on a second run", () => {
    const r = root();
    const first = ensureLayout({ root: r, user: null });
    const p = layoutPaths(r);
    for (const d of [p.home, p.projects, p.ssh, p.claude, p.logs, p.sessionLogs, p.backups, p.state])
      expect(statSync(d).isDirectory()).toBe(true);
    expect(statSync(p.ssh).mode & 0o777).toBe(0o700);
    expect(statSync(p.state).mode & 0o777).toBe(0o700);
    // 10 directories, 3 links in home, the starter .bashrc.
    expect(first.created).toHaveLength(14);
    expect(ensureLayout({ root: r, user: null })).toMatchObject({ created: [], fixed: [], warnings: [] });
    // ~/.claude and ~/.ssh lead to the seed's user/.claude and user/.ssh.
    writeFileSync(join(p.claude, "settings.json"), "{}");
    expect(readFileSync(join(p.home, ".claude", "settings.json"), "utf8")).toBe("{}");
    expect(readlinkSync(join(p.home, ".ssh"))).toBe("../.ssh");
    // ~/projects is the workspace's projects, so the panes' prompt reads ~/projects.
    writeFileSync(join(p.projects, "app.txt"), "x");
    expect(readFileSync(join(p.home, "projects", "app.txt"), "utf8")).toBe("x");
  });

  it("writes a starter .bashrc with a short prompt into an unused home only, and never again", () => {
    const r = root();
    const p = ensureLayout({ root: r, user: null }).paths;
    expect(readFileSync(join(p.home, ".bashrc"), "utf8")).toBe(STARTER_BASHRC);
    // An interactive bash reads it (after /etc/bash.bashrc): from ~/projects the prompt is `~/projects$ `.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: bash's own expansion (the prompt as bash shows it)
    const prompt = execFileSync("bash", ["-i", "-c", 'cd ~/projects && printf %s "${PS1@P}"'], {
      env: { HOME: p.home, PATH: process.env.PATH, TERM: "dumb" },
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    const ESC = String.fromCharCode(27);
    const plain = prompt.replaceAll(new RegExp(`${ESC}\\[[0-9;]*m|[${String.fromCharCode(1, 2)}]`, "g"), "");
    expect(plain).toMatch(/^~\/projects[$#] $/);
    // Deleted by a user who has other files: not written back.
    writeFileSync(join(p.home, ".bash_history"), "ls\n");
    rmSync(join(p.home, ".bashrc"));
    expect(ensureLayout({ root: r, user: null }).created).toEqual([]);
    // A home with the user's own files gets nothing.
    const r2 = root();
    mkdirSync(join(r2, "user", "home"), { recursive: true });
    writeFileSync(join(r2, "user", "home", ".profile"), "# mine");
    ensureLayout({ root: r2, user: null });
    expect(existsSync(join(r2, "user", "home", ".bashrc"))).toBe(false);
  });

  it("leaves a real ~/.claude directory alone and says so", () => {
    const r = root();
    mkdirSync(join(r, "user", "home", ".claude"), { recursive: true });
    writeFileSync(join(r, "user", "home", ".claude", "mine"), "x");
    const report = ensureLayout({ root: r, user: null });
    expect(report.warnings).toEqual([
      `${join(r, "user", "home", ".claude")} is a real directory, so programs use it instead of .claude beside home; left as is`,
    ]);
    expect(readFileSync(join(r, "user", "home", ".claude", "mine"), "utf8")).toBe("x");
  });

  it("fixes a loosened .ssh mode without touching its contents", () => {
    const r = root();
    const p = ensureLayout({ root: r, user: null }).paths;
    writeFileSync(join(p.ssh, "id_ed25519"), "secret", { mode: 0o600 });
    chmodSync(p.ssh, 0o755);
    expect(ensureLayout({ root: r, user: null }).fixed).toEqual([p.ssh]);
    expect(statSync(p.ssh).mode & 0o777).toBe(0o700);
    expect(readFileSync(join(p.ssh, "id_ed25519"), "utf8")).toBe("secret");
  });

  it("refuses, naming the path, when a file or symlink sits where a directory belongs, and deletes nothing", () => {
    const r = root();
    mkdirSync(join(r, "user"));
    writeFileSync(join(r, "user", "projects"), "my notes");
    expect(() => ensureLayout({ root: r, user: null })).toThrow(
      new LayoutError(
        join(r, "user", "projects"),
        "is a file where a directory belongs; move it away (it is not deleted for you)",
      ),
    );
    expect(readFileSync(join(r, "user", "projects"), "utf8")).toBe("my notes");

    const r2 = root();
    mkdirSync(join(r2, "user"));
    symlinkSync("/etc", join(r2, "user", "home"));
    expect(() => ensureLayout({ root: r2, user: null })).toThrow(/user\/home: is a symlink/);
    expect(() => ensureLayout({ root: join(r2, "missing"), user: null })).toThrow(
      /the workspace root does not exist/,
    );
  });

  it.skipIf(!isRoot)("gives the user tree to the box user and system/state to the agent (as root)", () => {
    const r = root();
    const p = ensureLayout({ root: r, user: { uid: 4242, gid: 4343 }, agent: { uid: 0, gid: 0 } }).paths;
    expect(statSync(p.ssh)).toMatchObject({ uid: 4242, gid: 4343 });
    expect(statSync(p.sessionLogs)).toMatchObject({ uid: 4242, gid: 4343 });
    expect(statSync(p.state)).toMatchObject({ uid: 0, gid: 0 });
    // Ownership is fixed on the directories themselves, never recursively on user data.
    writeFileSync(join(p.projects, "f"), "x");
    ensureLayout({ root: r, user: { uid: 5000, gid: 5000 }, agent: { uid: 0, gid: 0 } });
    expect(statSync(p.projects).uid).toBe(5000);
    expect(statSync(join(p.projects, "f")).uid).toBe(0);
  });
});

describe("ensureHomeLink", () => {
  it("creates, keeps, and repoints the link", () => {
    const d = root();
    const link = join(d, "claude");
    expect(ensureHomeLink(link, "/mnt/workspace/user/home")).toEqual({ action: "created" });
    expect(ensureHomeLink(link, "/mnt/workspace/user/home")).toEqual({ action: "unchanged" });
    expect(ensureHomeLink(link, "/other/user/home")).toEqual({ action: "relinked" });
    expect(readlinkSync(link)).toBe("/other/user/home");
  });

  it("replaces an empty directory, moves a non-empty one aside intact, refuses a file", () => {
    const d = root();
    const link = join(d, "claude");
    mkdirSync(link);
    expect(ensureHomeLink(link, "/t").action).toBe("replaced-empty-dir");

    const link2 = join(d, "bob");
    mkdirSync(link2);
    writeFileSync(join(link2, ".bashrc"), "alias x=y");
    const r = ensureHomeLink(link2, "/t");
    expect(r.action).toBe("moved-aside");
    expect(readFileSync(join(r.movedTo!, ".bashrc"), "utf8")).toBe("alias x=y");
    expect(lstatSync(link2).isSymbolicLink()).toBe(true);

    writeFileSync(join(d, "eve"), "data");
    expect(() => ensureHomeLink(join(d, "eve"), "/t")).toThrow(/is a file where the home symlink belongs/);
    const names = readdirSync(d).sort();
    expect(names).toHaveLength(4);
    expect(names.filter((n) => /^bob\.pre-berth-/.test(n))).toHaveLength(1);
  });
});
