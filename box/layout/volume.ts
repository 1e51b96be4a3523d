/**
 * Mounts the workspace volume on a VM: wait for the device (`/dev/disk/by-id/scsi-0HC_Volume_<id>` on
 * Hetzner), create a filesystem only on a blank device, record it in /etc/fstab with `nofail`, mount it.
 *
 * "Blank" is strict, because formatting the wrong device destroys a user's workspace:
 * - `blkid -p` (low-level probe, no cache) must report no signature at all (exit 2): no filesystem, no
 *   partition table, no RAID/LVM/LUKS/swap signature;
 * - and the first MiB must read as zeros, so even a device whose signature was damaged is refused.
 * A device with a filesystem is mounted as is, never reformatted, whatever its type; a signature that is
 * not a filesystem is an error that names it.
 * Idempotent: already mounted from this device → nothing to do; something else mounted there → error.
 */
import { execFile } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname } from "node:path";

export class VolumeError extends Error {
  override name = "VolumeError";
}
/** The device did not appear in time (maps to the agent's `start_timeout`). */
export class VolumeTimeoutError extends VolumeError {
  override name = "VolumeTimeoutError";
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}
export type CommandRunner = (command: string, args: string[]) => Promise<CommandResult>;

export const runCommand: CommandRunner = (command, args) =>
  new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 10 * 60_000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number")
        return reject(new VolumeError(`cannot run ${command}: ${err.message}`));
      resolve({ code: typeof err?.code === "number" ? err.code : 0, stdout, stderr });
    });
  });

export interface MountVolumeOptions {
  device: string;
  mountPoint: string;
  waitTimeoutMs?: number;
  pollMs?: number;
  fstabPath?: string;
  mountinfoPath?: string;
  run?: CommandRunner;
  /** Filesystem label for a newly created filesystem. */
  label?: string;
  log?: (msg: string) => void;
  /** Aborts the wait for the device (the agent is shutting down). */
  signal?: AbortSignal;
}

export interface MountVolumeResult {
  formatted: boolean;
  alreadyMounted: boolean;
  uuid: string;
  fsType: string;
  fstab: "added" | "updated" | "unchanged" | "foreign-entry-kept";
}

const FSTAB_MARKER = "# berth-volume";

export async function mountVolume(options: MountVolumeOptions): Promise<MountVolumeResult> {
  const run = options.run ?? runCommand;
  const log = options.log ?? (() => {});
  const mountinfoPath = options.mountinfoPath ?? "/proc/self/mountinfo";
  if (/\s/.test(options.mountPoint) || !options.mountPoint.startsWith("/"))
    throw new VolumeError(
      `mount point must be an absolute path without whitespace, got ${JSON.stringify(options.mountPoint)}`,
    );

  await waitForDevice(
    options.device,
    options.waitTimeoutMs ?? 120_000,
    options.pollMs ?? 250,
    options.signal,
  );
  const dev = realpathSync(options.device);
  if (!statSync(dev).isBlockDevice())
    throw new VolumeError(`${options.device} (${dev}) is not a block device`);

  const mounted = findMount(readFileSync(mountinfoPath, "utf8"), options.mountPoint);
  if (mounted && mounted.devId !== deviceId(dev))
    throw new VolumeError(
      `${options.mountPoint} already has ${mounted.source} (${mounted.fsType}) mounted, not ${options.device}; refusing to mount over it`,
    );

  let probe = await probeDevice(run, dev);
  let formatted = false;
  if (probe === null) {
    if (!firstMiBIsZero(dev))
      throw new VolumeError(
        `${options.device} has no recognisable signature but is not zeroed; refusing to format it (inspect it by hand)`,
      );
    log(`${options.device} is blank: creating an ext4 filesystem`);
    const mk = await run("mkfs.ext4", ["-q", "-L", options.label ?? "berth-ws", "-m", "0", dev]);
    if (mk.code !== 0)
      throw new VolumeError(`mkfs.ext4 ${dev} failed (exit ${mk.code}): ${mk.stderr.trim()}`);
    formatted = true;
    probe = await probeDevice(run, dev);
    if (probe === null) throw new VolumeError(`${dev} still shows no filesystem after mkfs.ext4`);
  }
  if (probe.USAGE !== "filesystem" || !probe.TYPE || !probe.UUID)
    throw new VolumeError(
      `${options.device} holds a ${probe.TYPE ?? probe.PTTYPE ?? "unknown"} signature (usage ${probe.USAGE ?? (probe.PTTYPE ? "partition table" : "unknown")}), not a filesystem; refusing to format or mount it`,
    );

  const fstab = ensureFstabEntry(
    options.fstabPath ?? "/etc/fstab",
    options.device,
    probe.UUID,
    options.mountPoint,
    probe.TYPE,
  );
  if (!mounted) {
    mkdirSync(options.mountPoint, { recursive: true });
    const m = await run("mount", ["-t", probe.TYPE, "-o", "defaults,discard", dev, options.mountPoint]);
    if (m.code !== 0)
      throw new VolumeError(
        `mount ${dev} on ${options.mountPoint} failed (exit ${m.code}): ${m.stderr.trim()}`,
      );
    const now = findMount(readFileSync(mountinfoPath, "utf8"), options.mountPoint);
    if (!now || now.devId !== deviceId(dev))
      throw new VolumeError(`mount reported success but ${options.mountPoint} is not mounted from ${dev}`);
  }
  return { formatted, alreadyMounted: mounted !== null, uuid: probe.UUID, fsType: probe.TYPE, fstab };
}

async function waitForDevice(
  device: string,
  timeoutMs: number,
  pollMs: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!existsSync(device)) {
    if (signal?.aborted) throw new VolumeError(`stopped waiting for ${device}: shutting down`);
    if (Date.now() >= until)
      throw new VolumeTimeoutError(
        `volume device ${device} did not appear within ${Math.round(timeoutMs / 1000)} s (is the volume attached?)`,
      );
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** blkid's low-level probe: the signature's tags, or null when it finds none at all. */
async function probeDevice(run: CommandRunner, dev: string): Promise<Record<string, string> | null> {
  const r = await run("blkid", ["-p", "-o", "export", dev]);
  if (r.code === 2) return null; // documented: nothing detected
  if (r.code !== 0)
    throw new VolumeError(`blkid -p ${dev} failed (exit ${r.code}): ${r.stderr.trim()}; not formatting`);
  const tags: Record<string, string> = {};
  for (const line of r.stdout.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) tags[line.slice(0, i)] = line.slice(i + 1);
  }
  return tags;
}

function firstMiBIsZero(dev: string): boolean {
  const fd = openSync(dev, "r");
  try {
    const buf = Buffer.alloc(1024 * 1024);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).every((b) => b === 0);
  } finally {
    closeSync(fd);
  }
}

/** `major:minor` of a block device, as /proc/self/mountinfo prints it. */
function deviceId(dev: string): string {
  const rdev = BigInt(statSync(dev, { bigint: true }).rdev);
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

function findMount(
  mountinfo: string,
  mountPoint: string,
): { devId: string; source: string; fsType: string } | null {
  let found: { devId: string; source: string; fsType: string } | null = null;
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    const f = left.split(" ");
    if (unescapeMount(f[4] ?? "") !== mountPoint) continue;
    const [fsType = "", source = ""] = right.split(" ");
    found = { devId: f[2] ?? "", source, fsType }; // the last mount on a path is the visible one
  }
  return found;
}

/**
 * Our fstab entry, by UUID (stable across device renames), `nofail` so a detached volume cannot hang the
 * boot, and a short device timeout. A marker comment on the line before identifies it as ours; an entry for
 * the mount point that is not ours is kept and reported, never rewritten.
 */
export function ensureFstabEntry(
  fstabPath: string,
  device: string,
  uuid: string,
  mountPoint: string,
  fsType: string,
): MountVolumeResult["fstab"] {
  const entry = `UUID=${uuid} ${mountPoint} ${fsType} defaults,nofail,discard,x-systemd.device-timeout=10s 0 2`;
  const marker = `${FSTAB_MARKER} ${device}`;
  const text = existsSync(fstabPath) ? readFileSync(fstabPath, "utf8") : "";
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const idx = lines.findIndex((l) => !l.trim().startsWith("#") && l.trim().split(/\s+/)[1] === mountPoint);
  let result: MountVolumeResult["fstab"];
  if (idx >= 0) {
    if (lines[idx] === entry && lines[idx - 1]?.startsWith(FSTAB_MARKER)) return "unchanged";
    if (!lines[idx - 1]?.startsWith(FSTAB_MARKER)) return "foreign-entry-kept";
    lines[idx - 1] = marker;
    lines[idx] = entry;
    result = "updated";
  } else {
    lines.push(marker, entry);
    result = "added";
  }
  const tmp = `${fstabPath}.berth-tmp`;
  mkdirSync(dirname(fstabPath), { recursive: true });
  writeFileSync(tmp, `${lines.join("\n")}\n`, {
    mode: existsSync(fstabPath) ? statSync(fstabPath).mode & 0o777 : 0o644,
  });
  renameSync(tmp, fstabPath);
  return result;
}
