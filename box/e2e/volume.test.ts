/**
 * The VM mount path on real block devices: loop devices over sparse files, with a by-id style symlink as
 * the device path, a private fstab and mount points under a temp dir. Needs root and loop devices
 * (util-linux `losetup`, e2fsprogs `mkfs.ext4`, `blkid`, `mkswap`); skipped with a message otherwise.
 */
import { execFileSync, spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ensureFstabEntry, mountVolume, VolumeError, VolumeTimeoutError } from "../layout/volume.ts";

// Root's tools live in the sbin directories, which a bare environment (`env -i`, some CI runners) leaves off
// PATH; on a box, systemd's PATH has them.
for (const dir of ["/usr/sbin", "/sbin"]) {
  if (!(process.env.PATH ?? "").split(":").includes(dir)) process.env.PATH = `${process.env.PATH}:${dir}`;
}

function loopSupported(): string | null {
  if (process.getuid?.() !== 0) return "not root";
  for (const tool of ["losetup", "blkid", "mkfs.ext4", "mkswap", "mount", "umount"])
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0)
      return `${tool} missing (util-linux / e2fsprogs)`;
  const probe = spawnSync("losetup", ["-f"]);
  return probe.status === 0 ? null : `no free loop device: ${probe.stderr.toString().trim()}`;
}
const skipReason = loopSupported();
if (skipReason) console.warn(`volume tests on loop devices skipped: ${skipReason}`);

const work = mkdtempSync(join(tmpdir(), "berth-vol-"));
const loops: string[] = [];
const mounts: string[] = [];
afterAll(() => {
  for (const m of mounts.reverse()) spawnSync("umount", [m]);
  for (const l of loops) spawnSync("losetup", ["-d", l]);
});

let n = 0;
function makeDevice(prepare?: (loop: string) => void): {
  byId: string;
  loop: string;
  mnt: string;
  fstab: string;
} {
  n++;
  const img = join(work, `disk${n}.img`);
  execFileSync("truncate", ["-s", "32M", img]);
  const loop = execFileSync("losetup", ["-f", "--show", img], { encoding: "utf8" }).trim();
  loops.push(loop);
  prepare?.(loop);
  const byId = join(work, `by-id-${n}`, `scsi-0HC_Volume_10${n}`);
  mkdirSync(join(work, `by-id-${n}`));
  symlinkSync(loop, byId);
  return { byId, loop, mnt: join(work, `mnt${n}`), fstab: join(work, `fstab${n}`) };
}

describe.skipIf(skipReason !== null)("mountVolume on loop devices", () => {
  it("formats a blank device once, mounts it, records fstab, and is idempotent", async () => {
    const d = makeDevice();
    const first = await mountVolume({ device: d.byId, mountPoint: d.mnt, fstabPath: d.fstab });
    mounts.push(d.mnt);
    expect(first).toMatchObject({ formatted: true, alreadyMounted: false, fsType: "ext4", fstab: "added" });
    const fstab = readFileSync(d.fstab, "utf8");
    expect(fstab).toBe(
      `# berth-volume ${d.byId}\nUUID=${first.uuid} ${d.mnt} ext4 defaults,nofail,discard,x-systemd.device-timeout=10s 0 2\n`,
    );
    writeFileSync(join(d.mnt, "precious.txt"), "user data");

    const again = await mountVolume({ device: d.byId, mountPoint: d.mnt, fstabPath: d.fstab });
    expect(again).toMatchObject({
      formatted: false,
      alreadyMounted: true,
      uuid: first.uuid,
      fstab: "unchanged",
    });

    // After an unmount (hibernate), the next boot mounts the same filesystem without formatting.
    execFileSync("umount", [d.mnt]);
    const wake = await mountVolume({ device: d.byId, mountPoint: d.mnt, fstabPath: d.fstab });
    expect(wake).toMatchObject({ formatted: false, alreadyMounted: false, uuid: first.uuid });
    expect(readFileSync(join(d.mnt, "precious.txt"), "utf8")).toBe("user data");
  });

  it("never formats a device with a signature that is not a filesystem (swap)", async () => {
    const d = makeDevice((loop) => execFileSync("mkswap", [loop], { stdio: "ignore" }));
    await expect(mountVolume({ device: d.byId, mountPoint: d.mnt, fstabPath: d.fstab })).rejects.toThrow(
      /holds a swap signature .*refusing to format or mount it/,
    );
    expect(
      execFileSync("blkid", ["-p", "-o", "value", "-s", "TYPE", d.loop], { encoding: "utf8" }).trim(),
    ).toBe("swap");
    expect(existsSync(d.fstab)).toBe(false);
  });

  it("refuses a device with data but no signature", async () => {
    const d = makeDevice((loop) => {
      const fd = openSync(loop, "r+");
      writeSync(fd, Buffer.from("leftover bytes from something"), 0, undefined, 4096);
      closeSync(fd);
    });
    await expect(mountVolume({ device: d.byId, mountPoint: d.mnt, fstabPath: d.fstab })).rejects.toThrow(
      /no recognisable signature but is not zeroed; refusing to format/,
    );
    expect(spawnSync("blkid", ["-p", d.loop]).status).toBe(2); // still nothing written
  });

  it("refuses to mount over something else mounted at the mount point", async () => {
    const d = makeDevice();
    mkdirSync(d.mnt);
    execFileSync("mount", ["-t", "tmpfs", "tmpfs", d.mnt]);
    mounts.push(d.mnt);
    await expect(mountVolume({ device: d.byId, mountPoint: d.mnt, fstabPath: d.fstab })).rejects.toThrow(
      /already has tmpfs \(tmpfs\) mounted/,
    );
  });
});

describe("mountVolume without loop devices", () => {
  it("times out clearly when the device never appears", async () => {
    const p = mountVolume({
      device: join(work, "no-such-device"),
      mountPoint: join(work, "m"),
      waitTimeoutMs: 200,
      pollMs: 20,
    });
    await expect(p).rejects.toBeInstanceOf(VolumeTimeoutError);
    await expect(p).rejects.toThrow(/did not appear within 0 s \(is the volume attached\?\)/);
  });

  it("refuses a regular file posing as the device", async () => {
    const f = join(work, "plain-file");
    writeFileSync(f, "");
    await expect(mountVolume({ device: f, mountPoint: join(work, "m2"), waitTimeoutMs: 10 })).rejects.toThrow(
      VolumeError,
    );
  });

  it("keeps an fstab entry for the mount point that is not ours", () => {
    const fstab = join(work, "fstab-foreign");
    writeFileSync(fstab, "UUID=abc /mnt/workspace xfs defaults 0 0\n");
    expect(ensureFstabEntry(fstab, "/dev/x", "def", "/mnt/workspace", "ext4")).toBe("foreign-entry-kept");
    expect(readFileSync(fstab, "utf8")).toBe("UUID=abc /mnt/workspace xfs defaults 0 0\n");
    const ours = join(work, "fstab-ours");
    writeFileSync(ours, "# keep me\n");
    expect(ensureFstabEntry(ours, "/dev/x", "u1", "/mnt/workspace", "ext4")).toBe("added");
    expect(ensureFstabEntry(ours, "/dev/x", "u2", "/mnt/workspace", "ext4")).toBe("updated");
    expect(readFileSync(ours, "utf8")).toMatch(/^# keep me\n# berth-volume \/dev\/x\nUUID=u2 /);
  });
});
