import { execFileSync } from "node:child_process";
import { chownSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  HOOK_EVENTS,
  HOOK_MARKER,
  hookCommand,
  installClaudeHooks,
  NOTIFICATION_MATCHER,
  writeAgentPortFile,
} from "./install-hooks.ts";

const dir = () => mkdtempSync(join(tmpdir(), "berth-hooks-"));
const HOOKS_MODULE = fileURLToPath(new URL("./install-hooks.ts", import.meta.url));

/** True when every directory above `path` lets other users through (the box user is one of them). */
function reachableByOthers(path: string): boolean {
  for (let d = dirname(path); d !== dirname(d); d = dirname(d))
    if ((statSync(d).mode & 0o001) === 0) return false;
  return true;
}
const privateCheckout = !reachableByOthers(process.execPath) || !reachableByOthers(HOOKS_MODULE);
if (process.getuid?.() === 0 && privateCheckout) {
  console.warn(
    "install-hooks.test.ts: skipped the as-the-box-user case: this checkout is in a private directory the box user cannot enter",
  );
}
const PORT_FILE = "/srv/ws/system/agent-port";
const OTHER_PORT_FILE = "/mnt/ws/system/agent-port";
const read = (d: string) => JSON.parse(readFileSync(join(d, "settings.json"), "utf8"));

describe("installClaudeHooks", () => {
  it("creates the documented hooks shape in an empty .claude", async () => {
    const d = dir();
    expect((await installClaudeHooks({ claudeDir: d, portFile: PORT_FILE })).changed).toBe(true);
    const s = read(d);
    expect(s.hooks.Notification).toEqual([
      {
        matcher: NOTIFICATION_MATCHER,
        hooks: [{ type: "command", command: hookCommand(PORT_FILE), timeout: 10 }],
      },
    ]);
    expect(s.hooks.Stop).toEqual([
      { hooks: [{ type: "command", command: hookCommand(PORT_FILE), timeout: 10 }] },
    ]);
    // The state hooks (claude-state.ts): working, needs you, idle, error, start and end.
    expect(Object.keys(s.hooks).sort()).toEqual([...HOOK_EVENTS].sort());
    for (const event of HOOK_EVENTS) expect(s.hooks[event][0].hooks[0].command).toBe(hookCommand(PORT_FILE));
  });

  it("keeps the user's settings and hooks, is idempotent, and follows a port file change", async () => {
    const d = dir();
    const user = {
      model: "opus",
      permissions: { allow: ["Bash(ls)"] },
      hooks: {
        Stop: [{ hooks: [{ type: "command", command: "say done" }] }],
        PreToolUse: [{ matcher: "Bash", hooks: [{ type: "command", command: "audit" }] }],
      },
    };
    writeFileSync(join(d, "settings.json"), JSON.stringify(user));
    await installClaudeHooks({ claudeDir: d, portFile: PORT_FILE });
    const once = readFileSync(join(d, "settings.json"), "utf8");
    expect((await installClaudeHooks({ claudeDir: d, portFile: PORT_FILE })).changed).toBe(false);
    expect(readFileSync(join(d, "settings.json"), "utf8")).toBe(once);

    await installClaudeHooks({ claudeDir: d, portFile: OTHER_PORT_FILE });
    const s = read(d);
    expect(s.model).toBe("opus");
    expect(s.permissions).toEqual(user.permissions);
    expect(s.hooks.PreToolUse).toEqual(user.hooks.PreToolUse);
    expect(s.hooks.Stop[0]).toEqual(user.hooks.Stop[0]);
    const ourCommands = JSON.stringify(s).match(new RegExp(HOOK_MARKER, "g"));
    expect(ourCommands).toHaveLength(HOOK_EVENTS.length);
    expect(JSON.stringify(s)).toContain(OTHER_PORT_FILE);
    expect(JSON.stringify(s)).not.toContain(PORT_FILE);
  });

  it("leaves broken JSON untouched and says why", async () => {
    const d = dir();
    writeFileSync(join(d, "settings.json"), "{ broken");
    await expect(installClaudeHooks({ claudeDir: d, portFile: PORT_FILE })).rejects.toThrow(
      /settings\.json is not valid JSON; leaving it untouched/,
    );
    expect(readFileSync(join(d, "settings.json"), "utf8")).toBe("{ broken");
    writeFileSync(join(d, "settings.json"), '{"hooks": {"Stop": {"not": "an array"}}}');
    await expect(installClaudeHooks({ claudeDir: d, portFile: PORT_FILE })).rejects.toThrow(
      /hooks\.Stop" must be an array/,
    );
  });

  it("produces a command that sh parses and that posts stdin with the session header", () => {
    // Parse-only check with the real shell: quoting mistakes would fail here.
    execFileSync("sh", ["-n", "-c", hookCommand(PORT_FILE)]);
    expect(hookCommand(PORT_FILE)).toMatch(
      /--data-binary @- "http:\/\/127\.0\.0\.1:\$p\/hooks\/claude" ; true # berth-agent-hook$/,
    );
    // No port in the command: it is read from the file at each run, so it survives agent restarts.
    expect(hookCommand(PORT_FILE)).toContain(`cat '${PORT_FILE}'`);
    expect(() => hookCommand("relative/port")).toThrow(RangeError);
    expect(() => hookCommand("/x/it's")).toThrow(RangeError);
  });

  it("runs to success without a port file, and posts nowhere (never to port 80)", () => {
    const d = dir();
    const out = execFileSync("sh", ["-c", `${hookCommand(join(d, "agent-port"))}\necho rc=$?`], {
      input: "{}",
      encoding: "utf8",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    expect(out.trim()).toBe("rc=0");
    writeAgentPortFile(join(d, "agent-port"), 4321);
    expect(readFileSync(join(d, "agent-port"), "utf8")).toBe("4321\n");
    expect(statSync(join(d, "agent-port")).mode & 0o777).toBe(0o644);
    writeAgentPortFile(join(d, "agent-port"), 4322);
    expect(readFileSync(join(d, "agent-port"), "utf8")).toBe("4322\n");
  });

  it("refuses a symlinked settings file without reading through it", async () => {
    const d = dir();
    const secret = join(dir(), "secret");
    writeFileSync(secret, "root:$y$hash:19000:0:99999:7:::");
    symlinkSync(secret, join(d, "settings.json"));
    await expect(installClaudeHooks({ claudeDir: d, portFile: PORT_FILE })).rejects.toThrow(
      /settings\.json is a symlink/,
    );
    expect(readFileSync(secret, "utf8")).toMatch(/^root:/);
  });

  // The installer re-runs this checkout's node and module as the box user, as it runs /opt/berth's on a VM:
  // from a clone inside a private directory (root's home, mktemp -d) that user cannot reach them.
  it.skipIf(process.getuid?.() !== 0 || privateCheckout)(
    "as root, works as the box user: their file, no reach beyond their rights",
    async () => {
      const d = dir();
      chownSync(d, 4242, 4242);
      expect(
        (await installClaudeHooks({ claudeDir: d, portFile: PORT_FILE, owner: { uid: 4242, gid: 4242 } }))
          .changed,
      ).toBe(true);
      expect(statSync(join(d, "settings.json"))).toMatchObject({ uid: 4242, gid: 4242 });
      expect(read(d).hooks.Stop).toHaveLength(1);

      // A planted link to a root-only file: the unprivileged child cannot read it, and nothing leaks.
      const d2 = dir();
      chownSync(d2, 4242, 4242);
      const secret = join(dir(), "shadow");
      writeFileSync(secret, "root:$y$secret-hash", { mode: 0o600 });
      symlinkSync(secret, join(d2, "settings.json"));
      const err = await installClaudeHooks({
        claudeDir: d2,
        portFile: PORT_FILE,
        owner: { uid: 4242, gid: 4242 },
      }).catch((e: Error) => e);
      expect((err as Error).message).toMatch(/settings\.json is a symlink; leaving it untouched/);
      expect((err as Error).message).not.toContain("secret-hash");

      // A directory the box user cannot write: refused by the kernel, not by our checks.
      const d3 = dir();
      await expect(
        installClaudeHooks({ claudeDir: d3, portFile: PORT_FILE, owner: { uid: 4242, gid: 4242 } }),
      ).rejects.toThrow(/EACCES/);
    },
  );
});
