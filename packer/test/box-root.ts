/**
 * A box's root filesystem in a scratch directory, driven the way a boot drives it: tmpfiles.d, cloud-init's
 * bootcmd and write_files, then systemd loading a unit's settings and credentials. systemd cannot run here,
 * so these emulate the few rules the boot contract relies on; packer/e2e/scripts.test.ts checks the tmpfiles emulation
 * against the real systemd-tmpfiles, and packer/scripts/70-units.sh the credential rules on real systemd.
 *
 * Paths are resolved as the box would resolve them: an absolute link target (/run/berth ->
 * /var/lib/berth/boot) stays inside the scratch root. Following it on the host would write the test's
 * files into the host's /var/lib.
 */
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { parseUnit, type UnitFile, value, values } from "../systemd-unit.ts";

export interface WriteFile {
  path: string;
  permissions: string;
  content: string;
}

/** `path` (absolute, as on the box) resolved to a path under `root`, following links the box would follow. */
export function resolveIn(root: string, path: string, hops = 0): string {
  if (hops > 40) throw new Error(`${path}: too many levels of symbolic links`);
  const parts = path.split("/").filter((p) => p !== "");
  let current = "/";
  for (const [i, part] of parts.entries()) {
    const next = join(current, part);
    const onHost = join(root, next);
    if (lstatSync(onHost, { throwIfNoEntry: false })?.isSymbolicLink()) {
      const target = readlinkSync(onHost);
      const base = target.startsWith("/") ? target : join(current, target);
      return resolveIn(root, join(base, ...parts.slice(i + 1)), hops + 1);
    }
    current = next;
  }
  return join(root, current);
}

/** The `d`, `L` and `L+` lines of a tmpfiles.d file, the only types berth.conf uses. Owners are not set. */
export function applyTmpfiles(root: string, conf: string): void {
  for (const raw of conf.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [type, path, mode, , , , target] = line.split(/\s+/) as string[];
    if (type === "d") {
      const dir = resolveIn(root, path!);
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      chmodSync(dir, Number.parseInt(mode!, 8));
    } else if (type === "L" || type === "L+") {
      const link = join(resolveIn(root, dirname(path!)), path!.split("/").pop()!);
      const existing = lstatSync(link, { throwIfNoEntry: false });
      if (existing && type === "L+") rmSync(link, { recursive: true, force: true });
      else if (existing) continue;
      mkdirSync(dirname(link), { recursive: true });
      symlinkSync(target!, link);
    } else {
      throw new Error(`tmpfiles emulation does not know type ${type}: ${line}`);
    }
  }
}

/**
 * cloud-init's bootcmd, for the commands the renderer emits. An unknown command throws, so a change to the
 * renderer's bootcmd cannot pass these tests unexamined. cloud-init runs the list as one script without
 * `set -e`, so a failing command is recorded and the next one still runs.
 */
export function runBootcmd(
  root: string,
  bootcmd: (string | string[])[],
): { metadataLocked: boolean; failures: string[] } {
  let metadataLocked = false;
  const failures: string[] = [];
  for (const cmd of bootcmd) {
    const argv = typeof cmd === "string" ? ["sh", "-c", cmd] : cmd;
    const install = argv.join(" ").match(/^install -d -m ([0-7]{4}) -o root -g root (\/.+)$/);
    const link = argv[0] === "sh" ? /^test -L (\S+) \|\| ln -sT (\S+) \1$/.exec(argv[2] ?? "") : null;
    if (install) {
      for (const path of install[2]!.split(" ")) {
        const dir = resolveIn(root, path);
        mkdirSync(dir, { recursive: true, mode: 0o755 });
        chmodSync(dir, Number.parseInt(install[1]!, 8));
      }
    } else if (link) {
      const at = join(root, link[1]!);
      const existing = lstatSync(at, { throwIfNoEntry: false });
      if (existing?.isSymbolicLink()) continue;
      if (existing) {
        failures.push(`ln: ${link[1]}: File exists`);
        continue;
      }
      mkdirSync(dirname(at), { recursive: true });
      symlinkSync(link[2]!, at);
    } else if (argv[0] === "sh" && argv[2]?.includes("iptables")) {
      metadataLocked = true;
    } else {
      throw new Error(`bootcmd emulation does not know ${JSON.stringify(argv)}`);
    }
  }
  return { metadataLocked, failures };
}

/** cloud-init's write_files: parents it has to create get its default 0755, the file its permissions. */
export function writeFiles(root: string, files: WriteFile[]): void {
  for (const file of files) {
    const path = resolveIn(root, file.path);
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    writeFileSync(path, file.content, { mode: Number.parseInt(file.permissions, 8) });
    chmodSync(path, Number.parseInt(file.permissions, 8));
  }
}

/** /run is a tmpfs: a reboot starts it empty. The root disk keeps everything else. */
export function reboot(root: string): void {
  rmSync(join(root, "run"), { recursive: true, force: true });
  mkdirSync(join(root, "run"), { mode: 0o755 });
}

// Where systemd 252 looks up a credential named without a path.
const CREDSTORES = ["/etc/credstore", "/run/credstore", "/usr/lib/credstore"];

export type UnitStart =
  | { state: "skipped"; condition: string }
  | { state: "failed"; reason: string }
  | { state: "started"; envFile: string; credentialsDir: string };

/** What systemd does before ExecStart=: conditions, then the environment file and the credentials. */
export function startUnit(root: string, name: string, unit: UnitFile | string): UnitStart {
  const u = typeof unit === "string" ? parseUnit(unit) : unit;
  for (const path of values(u, "Unit", "ConditionPathExists")) {
    if (!existsSync(resolveIn(root, path))) return { state: "skipped", condition: path };
  }
  const envPath = value(u, "Service", "EnvironmentFile");
  const envFile = envPath === undefined ? "" : resolveIn(root, envPath.replace(/^-/, ""));
  if (envPath !== undefined && !envPath.startsWith("-") && !existsSync(envFile)) {
    return { state: "failed", reason: `${envPath} is missing` };
  }
  const credentialsDir = join(root, "run/credentials", name);
  mkdirSync(credentialsDir, { recursive: true, mode: 0o700 });
  for (const line of values(u, "Service", "LoadCredential")) {
    const [id, path] = line.split(":") as [string, string | undefined];
    if (path !== undefined) {
      const source = resolveIn(root, path);
      if (!existsSync(source)) return { state: "failed", reason: `${path} is missing` };
      copyFileSync(source, join(credentialsDir, id));
      continue;
    }
    const source = CREDSTORES.map((dir) => resolveIn(root, `${dir}/${id}`)).find((p) => existsSync(p));
    if (source !== undefined) copyFileSync(source, join(credentialsDir, id));
  }
  return { state: "started", envFile, credentialsDir };
}

export interface TreeEntry {
  path: string;
  type: "dir" | "file" | "link";
  mode?: number;
  target?: string;
}

/** Every entry under `root`, without following links: what a boot left behind, comparable across runs. */
export function tree(root: string, under = ""): TreeEntry[] {
  const out: TreeEntry[] = [];
  for (const name of readdirSync(join(root, under)).sort()) {
    const rel = join(under, name);
    const st = lstatSync(join(root, rel));
    if (st.isSymbolicLink()) out.push({ path: rel, type: "link", target: readlinkSync(join(root, rel)) });
    else if (st.isDirectory()) {
      out.push({ path: rel, type: "dir", mode: st.mode & 0o7777 });
      out.push(...tree(root, rel));
    } else out.push({ path: rel, type: "file", mode: st.mode & 0o7777 });
  }
  return out;
}

/** A file's content as the box would read it. */
export const readIn = (root: string, path: string) => readFileSync(resolveIn(root, path), "utf8");
