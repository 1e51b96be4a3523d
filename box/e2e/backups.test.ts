/**
 * The restic driver and the agent's backup/restore runner on real restic, against a local repository and a
 * real S3-protocol server (moto) with a fault proxy in front: byte-for-byte restores, the safety snapshot,
 * a partial restore, a SIGKILLed backup followed by a good one (and a prune, which needs the stale lock
 * gone), 403s that pass, an endpoint that stays down, and no secret in an error. The S3 round trip itself,
 * with the argv check, runs through the whole stack in runtime/e2e/backups.test.ts.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BoxBackups, type RestartableSessions } from "../backups/box-backups.ts";
import { Restic, ResticError, type ResticRepository } from "../backups/restic.ts";
import type { AgentEventDraft, BackupPayload } from "../protocol.ts";
import {
  type FaultProxy,
  motoUnavailable,
  type S3Server,
  startFaultProxy,
  startMoto,
} from "../testing/s3-server.ts";
import { waitUntil } from "../testing/wait.ts";

const resticMissing = spawnSync("sh", ["-c", "command -v restic"]).status === 0 ? null : "restic not on PATH";
if (resticMissing) console.warn(`backup tests skipped: ${resticMissing}`);
const motoMissing = resticMissing ?? motoUnavailable();
if (motoMissing && !resticMissing) console.warn(`S3 backup tests skipped: ${motoMissing}`);

const work = mkdtempSync(join(tmpdir(), "berth-backup-"));
const PASSWORD = "restic-pass-do-not-leak-98765";
const noWait = { sleep: async () => {} };
const quiet = { info() {}, warn() {} };

afterAll(() => rmSync(work, { recursive: true, force: true }));

function passwordFile(): string {
  const file = join(work, "restic-password");
  writeFileSync(file, PASSWORD, { mode: 0o600 });
  return file;
}

/** A workspace tree with the layout's backed-up parts. */
function workspace(name: string): string {
  const root = join(work, name);
  for (const d of ["user/projects/app", "user/home", "system/state", "system/backups"])
    mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, "user/projects/app/main.ts"), "console.log('v1')\n");
  writeFileSync(
    join(root, "user/projects/app/data.bin"),
    Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251)),
  );
  writeFileSync(join(root, "user/home/.bashrc"), "PS1='$ '\n");
  writeFileSync(join(root, "system/state/actions.json"), "[]");
  return root;
}

/** Every file under `dir` with its bytes, for byte-for-byte comparison. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p, r);
      else if (e.isFile()) out[r] = readFileSync(p).toString("base64");
    }
  };
  walk(dir, "");
  return out;
}

class RecordingSessions implements RestartableSessions {
  names = ["main", "dev"];
  calls: string[] = [];
  async list() {
    return this.names.map((name) => ({ name }));
  }
  async kill(name: string) {
    this.calls.push(`kill ${name}`);
  }
  async ensure(name: string) {
    this.calls.push(`ensure ${name}`);
  }
}

function runner(restic: Restic, root: string, sessions = new RecordingSessions()) {
  const events: BackupPayload[] = [];
  const backups = new BoxBackups({
    restic,
    root,
    host: "ws-test",
    sessions,
    emit: (d: AgentEventDraft) => {
      if (d.type === "backup") events.push(d.payload);
    },
    log: quiet,
    progressEveryMs: 0,
  });
  return { backups, events, sessions };
}

const uuid = () => crypto.randomUUID();

/** Snapshot the whole cycle: backup, damage, restore, compare; then the safety snapshot undoes it. */
async function roundTrip(repo: ResticRepository, name: string) {
  const root = workspace(name);
  const restic = new Restic(repo, { ...noWait, cacheDir: join(root, "system/backups/cache") });
  expect(await restic.ensureInit()).toBe("created");
  expect(await restic.ensureInit()).toBe("exists");
  const { backups, events, sessions } = runner(restic, root);
  const before = tree(join(root, "user"));
  const backupId = uuid();
  const snapshot = await backups.runBackup({ id: "a1", backupId, trigger: "manual", prune: false });
  expect(snapshot).toMatch(/^[0-9a-f]{64}$/);
  const done = events.find((e) => e.phase === "succeeded")!;
  expect(done).toMatchObject({ backupId, operation: "backup", snapshotId: snapshot });
  expect(done.files).toBeGreaterThanOrEqual(4);
  expect(done.bytesAdded).toBeGreaterThan(0);

  // Damage: change one file, delete another, add a new one.
  writeFileSync(join(root, "user/projects/app/main.ts"), "console.log('broken')\n");
  rmSync(join(root, "user/home/.bashrc"));
  writeFileSync(join(root, "user/projects/app/new.txt"), "written after the backup\n");
  const damaged = tree(join(root, "user"));

  const safetyId = uuid();
  await backups.runRestore({ id: "r1", backupId: safetyId, snapshot, paths: [] });
  expect(tree(join(root, "user"))).toEqual(before);
  expect(sessions.calls).toEqual(["kill main", "kill dev", "ensure main", "ensure dev"]);
  expect(existsSync(join(root, "system/state/actions.json"))).toBe(true);
  expect(readdirSync(join(root, "system/backups")).filter((n) => n.startsWith("staging"))).toEqual([]);

  // The safety snapshot is listed, tagged, and holds the damaged state.
  const safety = events.find((e) => e.backupId === safetyId && e.operation === "backup")!;
  expect(safety.phase).toBe("succeeded");
  const snaps = await restic.snapshots();
  const tagged = snaps.find((s) => s.id === safety.snapshotId)!;
  expect(tagged.tags).toContain("pre-restore");
  expect(events.find((e) => e.operation === "restore")?.phase).toBe("succeeded");
  await backups.runRestore({ id: "r2", backupId: uuid(), snapshot: tagged.id, paths: [] });
  expect(tree(join(root, "user"))).toEqual(damaged);

  // A partial restore touches only the chosen path.
  await backups.runRestore({ id: "r3", backupId: uuid(), snapshot, paths: ["user/projects/app/main.ts"] });
  expect(readFileSync(join(root, "user/projects/app/main.ts"), "utf8")).toBe("console.log('v1')\n");
  expect(existsSync(join(root, "user/projects/app/new.txt"))).toBe(true);
  return { root, restic, backups, snapshot };
}

describe.skipIf(resticMissing)("restic driver, local repository", () => {
  it("backs up, restores byte for byte, and the safety snapshot brings back the pre-restore state", async () => {
    await roundTrip({ url: join(work, "repo-local"), password: { file: passwordFile() } }, "ws-local");
  }, 120_000);

  it("a path that is not in the snapshot fails the restore before anything changes", async () => {
    const root = workspace("ws-missing");
    const restic = new Restic({ url: join(work, "repo-missing"), password: { value: PASSWORD } }, noWait);
    const { backups, sessions } = runner(restic, root);
    const snapshot = await backups.runBackup({ id: "b", backupId: uuid(), trigger: "manual", prune: false });
    const before = tree(join(root, "user"));
    await expect(
      backups.runRestore({ id: "r", backupId: uuid(), snapshot, paths: ["user/nope.txt"] }),
    ).rejects.toThrow(/not in snapshot .*user\/nope\.txt/);
    await expect(
      backups.runRestore({ id: "r2", backupId: uuid(), snapshot, paths: ["system/state"] }),
    ).rejects.toThrow(/outside user/);
    expect(tree(join(root, "user"))).toEqual(before);
    expect(sessions.calls).toEqual([]);
  }, 60_000);

  it("a restore never writes through a symlink the user put in the way, outside the workspace", async () => {
    const root = workspace("ws-symlink");
    const outside = join(work, "outside-ws-symlink");
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, "passwd"), "root:x:0:0\n");
    // Backed up as a plain directory of the user's...
    mkdirSync(join(root, "user/evil"));
    writeFileSync(join(root, "user/evil/passwd"), "root::0:0\n");
    const restic = new Restic({ url: join(work, "repo-symlink"), password: { value: PASSWORD } }, noWait);
    const { backups, sessions } = runner(restic, root);
    const snapshot = await backups.runBackup({ id: "b", backupId: uuid(), trigger: "manual", prune: false });
    // ...then replaced by a link to somewhere the agent (root on a VM) may write and the user may not.
    rmSync(join(root, "user/evil"), { recursive: true });
    symlinkSync(outside, join(root, "user/evil"));
    await expect(
      backups.runRestore({ id: "r", backupId: uuid(), snapshot, paths: ["user/evil/passwd"] }),
    ).rejects.toThrow(/user\/evil.*symlink/);
    expect(readFileSync(join(outside, "passwd"), "utf8")).toBe("root:x:0:0\n");
    expect(readdirSync(outside)).toEqual(["passwd"]);
    expect(sessions.calls).toEqual([]);
  }, 60_000);

  it("a restore of a path and a path below it applies whole, not half", async () => {
    const root = workspace("ws-nested");
    const restic = new Restic({ url: join(work, "repo-nested"), password: { value: PASSWORD } }, noWait);
    const { backups, events } = runner(restic, root);
    const snapshot = await backups.runBackup({ id: "b", backupId: uuid(), trigger: "manual", prune: false });
    const before = tree(join(root, "user"));
    writeFileSync(join(root, "user/projects/app/main.ts"), "console.log('broken')\n");
    await backups.runRestore({
      id: "r",
      backupId: uuid(),
      snapshot,
      paths: ["user/projects/app", "user/projects/app/main.ts"],
    });
    expect(tree(join(root, "user"))).toEqual(before);
    expect(events.find((e) => e.operation === "restore")?.phase).toBe("succeeded");
  }, 60_000);

  it("restic SIGKILLed mid-backup: the next backup succeeds and the prune after it too", async () => {
    const root = workspace("ws-kill");
    // Enough data that the backup is still running when the first progress line arrives.
    const big = join(root, "user/projects/big");
    mkdirSync(big, { recursive: true });
    // Random, so neither compression nor dedup makes it quick.
    for (let i = 0; i < 40; i++) writeFileSync(join(big, `f${i}`), randomBytes(1 << 20));
    const repo = join(work, "repo-kill");
    const restic = new Restic({ url: repo, password: { value: PASSWORD } }, noWait);
    await restic.ensureInit();
    const { backups, events } = runner(restic, root);
    let killed = false;
    // Killed once it reports progress: it holds its lock and is writing data.
    const killer = waitUntil(
      () => {
        if (!events.some((e) => e.phase === "running")) return false;
        // restic runs from the workspace root (relative paths), so its cwd says which one it is.
        const pid = resticPids().find((p) => {
          try {
            return readlinkSync(`/proc/${p}/cwd`) === root;
          } catch {
            return false;
          }
        });
        if (!pid) return false;
        process.kill(pid, "SIGKILL");
        killed = true;
        return true;
      },
      "a running restic backup",
      60_000,
      5,
    );
    const first = backups.runBackup({ id: "k1", backupId: uuid(), trigger: "manual", prune: false });
    await expect(first).rejects.toThrow(ResticError);
    await killer;
    expect(killed).toBe(true);
    expect(readdirSync(join(repo, "locks")).length).toBe(1); // the dead run's lock is left behind
    const snapshot = await backups.runBackup({ id: "k2", backupId: uuid(), trigger: "nightly", prune: true });
    expect(snapshot).toMatch(/^[0-9a-f]{64}$/);
    expect(readdirSync(join(repo, "locks"))).toEqual([]);
  }, 120_000);
});

function resticPids(): number[] {
  return readdirSync("/proc")
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((pid) => {
      try {
        return cmdline(pid).startsWith("restic");
      } catch {
        return false;
      }
    });
}
function cmdline(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
}

describe.skipIf(motoMissing)("restic driver, S3 (moto) with faults", () => {
  let s3: S3Server;
  let proxy: FaultProxy;
  beforeAll(async () => {
    s3 = await startMoto();
    await s3.createBucket("berth-ws");
    proxy = await startFaultProxy(s3.endpoint);
  }, 90_000);
  afterAll(async () => {
    await proxy?.stop();
    await s3?.stop();
  });
  const repo = (prefix: string, endpoint = s3.endpoint): ResticRepository => ({
    url: `s3:${endpoint}/berth-ws/${prefix}`,
    password: { value: PASSWORD },
    s3: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });

  it("the endpoint answers 403 for a while (a new R2 token): the run succeeds after retries", async () => {
    const waits: number[] = [];
    const restic = new Restic(repo("w403", proxy.endpoint), {
      sleep: async (ms) => {
        waits.push(ms);
        // The condition, not a clock: the token "becomes valid" after the second wait.
        if (waits.length >= 2) proxy.mode = "pass";
      },
      retry: { attempts: 5, baseMs: 1000, maxMs: 4000 },
    });
    proxy.mode = "deny";
    const root = workspace("ws-403");
    const { backups, events } = runner(restic, root);
    const snapshot = await backups.runBackup({ id: "d", backupId: uuid(), trigger: "manual", prune: false });
    expect(snapshot).toMatch(/^[0-9a-f]{64}$/);
    expect(proxy.denied).toBeGreaterThan(0);
    expect(waits).toEqual([1000, 2000]); // exponential
    expect(events.at(-1)?.phase).toBe("succeeded");
  }, 180_000);

  it("the endpoint down for the whole run: failed, with a reason a user understands", async () => {
    proxy.mode = "down";
    const waits: number[] = [];
    const restic = new Restic(repo("wdown", proxy.endpoint), {
      sleep: async (ms) => void waits.push(ms),
      // restic itself retries a dead endpoint for ~15 s; one try of ours is enough to see the outcome.
      retry: { attempts: 1, baseMs: 10, maxMs: 10 },
    });
    const { backups, events } = runner(restic, workspace("ws-down"));
    const err = await backups
      .runBackup({ id: "x", backupId: uuid(), trigger: "manual", prune: false })
      .catch((e: Error) => e);
    proxy.mode = "pass";
    expect(err).toBeInstanceOf(ResticError);
    expect((err as ResticError).failure).toBe("unreachable");
    expect((err as Error).message).toMatch(/^the backup storage could not be reached/);
    expect(waits).toEqual([]);
    const failed = events.at(-1)!;
    expect(failed.phase).toBe("failed");
    expect(failed.error).toMatch(/could not be reached/);
    for (const text of [(err as Error).message, JSON.stringify(events)]) {
      expect(text).not.toContain(PASSWORD);
      expect(text).not.toContain(s3.secretAccessKey);
    }
  }, 180_000);
});
