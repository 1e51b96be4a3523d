/**
 * Backups: an incremental backup of an unchanged ~20k-file workspace through the agent's runner
 * (box/backups: init check, marker, restic --json with progress parsing, snapshot id resolution) timed
 * against a bare `restic backup` of the same tree in the same run (ratio near 1.0 is the goal: the
 * driver's own overhead), and the full (first) backup's throughput in MB/s. Local repository, restic on
 * PATH; skipped without it.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BoxBackups } from "../../box/backups/box-backups.ts";
import { Restic } from "../../box/backups/restic.ts";
import { RESTIC_MISSING } from "../../box/testing/restic.ts";
import { median } from "./harness.ts";

const FILES = 20_000;

export async function benchBackups(): Promise<void> {
  if (RESTIC_MISSING) {
    console.log(`backups: skipped (${RESTIC_MISSING})`);
    return;
  }
  const work = mkdtempSync(join(tmpdir(), "berth-bench-backup-"));
  try {
    const root = join(work, "ws");
    let bytes = 0;
    for (let d = 0; d < FILES / 100; d++) {
      const dir = join(root, "user", "projects", `d${d}`);
      mkdirSync(dir, { recursive: true });
      for (let f = 0; f < 100; f++) {
        // Mostly small source-like files, every 50th a larger binary.
        const data = f % 50 === 0 ? randomBytes(256 * 1024) : randomBytes(2 * 1024);
        writeFileSync(join(dir, `f${f}`), data);
        bytes += data.length;
      }
    }
    mkdirSync(join(root, "system", "state"), { recursive: true });
    const password = join(work, "password");
    writeFileSync(password, "bench-password", { mode: 0o600 });
    const repo = join(work, "repo");
    const cache = join(work, "cache");
    const restic = new Restic({ url: repo, password: { file: password } }, { cacheDir: cache });
    const runner = new BoxBackups({
      restic,
      root,
      host: "bench",
      sessions: null,
      emit: () => {},
      log: { info() {}, warn() {} },
    });
    const action = { id: "bench", trigger: "manual" as const, prune: false };
    let t = performance.now();
    await runner.runBackup(action);
    const fullS = (performance.now() - t) / 1000;

    const bare = () => {
      const t0 = performance.now();
      execFileSync(
        "restic",
        [
          "--cache-dir",
          cache,
          "backup",
          "--json",
          "--exclude-caches",
          "--host",
          "bench",
          "--",
          ...runner.sources(),
        ],
        {
          cwd: root,
          env: {
            PATH: process.env.PATH,
            HOME: work,
            RESTIC_REPOSITORY: repo,
            RESTIC_PASSWORD_FILE: password,
          },
          stdio: "ignore",
        },
      );
      return performance.now() - t0;
    };
    const ours: number[] = [];
    const baseline: number[] = [];
    for (let i = 0; i < 3; i++) {
      baseline.push(bare());
      t = performance.now();
      await runner.runBackup(action);
      ours.push(performance.now() - t);
    }
    const o = median(ours);
    const b = median(baseline);
    console.log(`backups: ${FILES} files, ${(bytes / 1e6).toFixed(0)} MB`);
    console.log(
      `  full backup through the agent runner: ${fullS.toFixed(1)} s, ${(bytes / 1e6 / fullS).toFixed(1)} MB/s`,
    );
    console.log(
      `  incremental, unchanged tree (median of 3): runner ${(o / 1000).toFixed(2)} s vs bare restic ${(b / 1000).toFixed(2)} s, ratio ${(o / b).toFixed(2)}`,
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
