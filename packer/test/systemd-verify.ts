/** `systemd-analyze verify` of unit files against a scratch root (used by packer/ and infra/ tests). */
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseUnit } from "../systemd-unit.ts";
import { run, which } from "./tools.ts";

export const systemctl = which("systemctl");

/**
 * systemd-analyze verify against a scratch root: the host's own units (for targets such as
 * sysinit.target) plus ours, and an executable stub at every Exec*= path, which do not exist here.
 * `enable` runs `systemctl --root enable` first, as the image build does, so the boot transaction
 * verify builds includes what multi-user.target then wants (and any ordering cycle that makes).
 */
export function verify(unitTexts: Record<string, string>, enable: string[] = []) {
  const root = mkdtempSync(join(tmpdir(), "berth-units-"));
  cpSync("/usr/lib/systemd/system", join(root, "usr/lib/systemd/system"), { recursive: true });
  const etc = join(root, "etc/systemd/system");
  mkdirSync(etc, { recursive: true });
  for (const [name, text] of Object.entries(unitTexts)) {
    writeFileSync(join(etc, name), text);
    const service = parseUnit(text).get("Service") ?? new Map<string, string[]>();
    const execs = [...service]
      .filter(([key]) => key.startsWith("Exec"))
      .flatMap(([, v]) => v)
      // An empty Exec*= resets the list (a drop-in replacing ExecStart): nothing to stub.
      .filter((exec) => exec.trim() !== "");
    for (const exec of execs) {
      const bin = join(root, exec.replace(/^[-@:+!]+/, "").split(/\s+/)[0]!);
      mkdirSync(dirname(bin), { recursive: true });
      writeFileSync(bin, "#!/bin/sh\n");
      chmodSync(bin, 0o755);
    }
  }
  const paths = Object.keys(unitTexts).map((n) => join(etc, n));
  if (enable.length > 0) {
    const enabled = run(systemctl!, [`--root=${root}`, "enable", ...enable]);
    if (enabled.status !== 0) throw new Error(enabled.stderr);
    // The boot's own transaction: only starting the target pulls in everything enabled under it.
    paths.push(join(root, "usr/lib/systemd/system/multi-user.target"));
  }
  return run("systemd-analyze", ["verify", `--root=${root}`, "--man=no", ...paths], {
    env: { ...process.env, SYSTEMD_LOG_TARGET: "console", SYSTEMD_LOG_COLOR: "0" },
  });
}

export const analyze = which("systemd-analyze");
export const canVerify = analyze !== undefined && existsSync("/usr/lib/systemd/system/sysinit.target");
