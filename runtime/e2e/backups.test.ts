/**
 * Backups end to end in local mode: a real control plane, real box agents with real tmux and real restic,
 * to a real S3-protocol server (moto) behind a fault proxy the test controls. Write → back up → damage →
 * restore (byte for byte, sessions stopped and started) → the safety snapshot undoes it; refused requests
 * (someone else's, unknown snapshot, a path outside the layout); nightly once across two replicas;
 * hibernate with its pre-stop backup, export while hibernated, a failing pre-stop that does not block the
 * hibernate; and no secret in logs, argv or API answers.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { Restic } from "../../box/backups/restic.ts";
import { RESTIC_MISSING } from "../../box/testing/restic.ts";
import {
  type FaultProxy,
  motoUnavailable,
  type S3Server,
  startFaultProxy,
  startMoto,
} from "../../box/testing/s3-server.ts";
import { BackupService } from "../domain/backups/service.ts";
import { upsertUser } from "../domain/identity/actor.ts";
import { createLogger } from "../platform/logger.ts";
import { json } from "../test/control-plane.ts";
import {
  createReadyWorkspace,
  type LocalTestControlPlane,
  startLocalControlPlane,
} from "../test/local-control-plane.ts";
import { waitFor } from "../test/wait.ts";

const skip = RESTIC_MISSING ?? motoUnavailable();
if (skip) console.warn(`backup e2e skipped: ${skip}`);

/** Every line the control plane logs, to grep for secrets. */
const logLines: string[] = [];
const capture = new Writable({
  write(chunk, _enc, done) {
    logLines.push(String(chunk));
    done();
  },
});

describe.skipIf(skip)(
  `backups in local mode (real restic, moto S3)${skip ? ` (skipped: ${skip})` : ""}`,
  async () => {
    // The setup below runs while tests are collected, skipped or not: start nothing without restic and moto.
    if (skip) {
      it("needs restic and moto_server", () => {});
      return;
    }
    let s3: S3Server;
    let proxy: FaultProxy;
    let cp: LocalTestControlPlane;
    const answers: string[] = [];
    const argv: string[] = [];
    let sampling = true;

    s3 = await startMoto();
    await s3.createBucket("berth-backups");
    proxy = await startFaultProxy(s3.endpoint);
    cp = await startLocalControlPlane(
      { BERTH_BACKUP_PRE_STOP_SECONDS: "90" },
      {
        start: { logger: createLogger("debug", capture), backups: { pollMs: 100 } },
        driver: {
          backupS3: {
            base: `s3:${proxy.endpoint}/berth-backups`,
            accessKeyId: s3.accessKeyId,
            secretAccessKey: s3.secretAccessKey,
          },
          // One try: restic itself retries a dead endpoint for ~15 s, which is enough for the test.
          agentEnv: { BERTH_BACKUP_RETRY_ATTEMPTS: "1" },
        },
      },
    );
    const sampler = (async () => {
      while (sampling) {
        for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
          try {
            const line = readFileSync(`/proc/${pid}/cmdline`, "utf8");
            if (line.startsWith("restic")) argv.push(line.split("\0").join(" "));
          } catch {}
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    afterAll(async () => {
      sampling = false;
      await sampler;
      await proxy?.stop();
      await s3?.stop();
    });

    const token = cp.localToken;
    const api = async (path: string, init: RequestInit & { json?: unknown; token?: string } = {}) => {
      const res = await cp.api(path, { token, ...init });
      const text = await res.clone().text();
      answers.push(text);
      return res;
    };
    const { pool } = cp.deps.database;
    const workspaceId = await createReadyWorkspace(cp, "backed-up");
    const user = join(cp.workspacesRoot, workspaceId, "volume", "user");
    const base = `/api/v1/workspaces/${workspaceId}/backups`;

    const runOf = async (id: string) => (await json(await api(`${base}/runs/${id}`))).backup;
    const waitRun = (id: string, what: string) =>
      waitFor(
        what,
        async () => {
          const run = await runOf(id);
          return run.status === "succeeded" || run.status === "failed" ? run : null;
        },
        90_000,
        200,
      );
    const files = () => {
      const out: Record<string, string> = {};
      const walk = (d: string, rel: string) => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
          if (rel === "" && e.name === "home") continue; // the shell's history and the like
          const r = rel ? `${rel}/${e.name}` : e.name;
          if (e.isDirectory()) walk(join(d, e.name), r);
          else if (e.isFile()) out[r] = readFileSync(join(d, e.name)).toString("base64");
        }
      };
      walk(user, "");
      return out;
    };

    mkdirSync(join(user, "projects", "app"), { recursive: true });
    writeFileSync(join(user, "projects", "app", "main.ts"), "export const v = 1;\n");
    writeFileSync(
      join(user, "projects", "app", "blob.bin"),
      Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7) % 256)),
    );
    writeFileSync(join(user, "projects", "notes.md"), "# notes\n");

    let snapshot = "";

    it("backs up on demand, lists the snapshot with its size, and browses its files", async () => {
      const res = await api(base, { method: "POST" });
      expect(res.status).toBe(202);
      const { backup } = await json(res);
      expect(backup).toMatchObject({ trigger: "manual", status: "pending" });
      const done = await waitRun(backup.id, "the manual backup");
      expect(done).toMatchObject({ status: "succeeded", error: null });
      expect(done.snapshotId).toMatch(/^[0-9a-f]{64}$/);
      expect(done.files).toBeGreaterThanOrEqual(3);
      expect(done.bytesAdded).toBeGreaterThan(0);
      snapshot = done.snapshotId;
      const list = await json(await api(base));
      expect(list.repositoryError).toBeNull();
      expect(list.snapshots).toEqual([
        expect.objectContaining({ id: snapshot, trigger: "manual", bytesAdded: done.bytesAdded }),
      ]);
      const browse = await json(await api(`${base}/${snapshot}/files`));
      const paths = browse.files.map((f: { path: string }) => f.path);
      expect(paths).toEqual(expect.arrayContaining(["user/projects/app/main.ts", "user/projects/notes.md"]));
      expect(paths.every((p: string) => p.startsWith("user") || p.startsWith("system"))).toBe(true);
      const audit = await pool.query("SELECT action FROM audit_log WHERE target_id = $1", [workspaceId]);
      expect(audit.rows.map((r) => r.action)).toContain("backup.request");
    });

    it("refuses someone else's workspace, an unknown snapshot and a path outside the layout, changing nothing", async () => {
      const bob = await upsertUser(cp.deps.store, "user_backup_bob");
      const cookie = `berth_session=${await cp.deps.authenticator.sessionFor(bob)}`;
      const asBob = (path: string, init: RequestInit = {}) =>
        cp.api(path, { ...init, headers: { cookie, "content-type": "application/json" } });
      const actions = async () =>
        Number((await pool.query("SELECT count(*) FROM agent_actions")).rows[0].count);
      const before = await actions();
      for (const [path, method] of [
        [base, "GET"],
        [base, "POST"],
        [`${base}/${snapshot}/files`, "GET"],
        [`${base}/${snapshot}/export`, "GET"],
        [`${base}/${snapshot}/restore`, "POST"],
      ] as const) {
        const res = await asBob(path, { method, ...(method === "POST" ? { body: "{}" } : {}) });
        expect(res.status, `${method} ${path}`).toBe(404);
      }
      expect((await api(`${base}/${"0".repeat(64)}/files`)).status).toBe(404);
      expect((await api(`${base}/deadbeef/export`)).status).toBe(404);
      expect((await api(`${base}/${"0".repeat(64)}/restore`, { method: "POST", json: {} })).status).toBe(404);
      const bad = await api(`${base}/${snapshot}/restore`, {
        method: "POST",
        json: { paths: ["user/projects", "../../etc/passwd"] },
      });
      expect(bad.status).toBe(400);
      expect((await json(bad)).error.message).toContain("../../etc/passwd");
      const sys = await api(`${base}/${snapshot}/restore`, {
        method: "POST",
        json: { paths: ["system/state"] },
      });
      expect(sys.status).toBe(400);
      expect(await actions()).toBe(before);
    });

    it("restores byte for byte with sessions restarted; the safety snapshot brings back the pre-restore state", async () => {
      const original = files();
      await api(`/api/v1/workspaces/${workspaceId}/sessions`, { method: "POST", json: { name: "dev" } });
      const socket = cp.agentState(workspaceId)!.tmuxSocket;
      const panePid = () =>
        execFileSync("tmux", ["-S", socket, "display-message", "-p", "-t", "=dev", "#{pid}"])
          .toString()
          .trim();
      const hasDev = () => {
        try {
          execFileSync("tmux", ["-S", socket, "has-session", "-t", "=dev"], { stdio: "ignore" });
          return true;
        } catch {
          return false;
        }
      };
      await waitFor("session dev", hasDev);
      const paneBefore = panePid();

      writeFileSync(join(user, "projects", "app", "main.ts"), "export const v = 'broken';\n");
      rmSync(join(user, "projects", "notes.md"));
      writeFileSync(join(user, "projects", "stray.txt"), "made after the backup\n");
      const damaged = files();

      const res = await api(`${base}/${snapshot}/restore`, { method: "POST", json: {} });
      expect(res.status).toBe(202);
      const { safetyBackup } = await json(res);
      expect(safetyBackup.trigger).toBe("pre-restore");
      const notified = (kind: string, count: number) =>
        waitFor(
          `${count} ${kind} notification(s)`,
          async () => {
            const r = await pool.query(
              "SELECT count(*) FROM notifications WHERE workspace_id = $1 AND kind = $2",
              [workspaceId, kind],
            );
            return Number(r.rows[0].count) >= count;
          },
          90_000,
          200,
        );
      await notified("restore_done", 1);
      expect(files()).toEqual(original);
      await waitFor("session dev back", hasDev);
      expect(panePid()).not.toBe(paneBefore); // stopped and started again, not left running through the swap

      const safety = await runOf(safetyBackup.id);
      expect(safety).toMatchObject({ status: "succeeded", trigger: "pre-restore" });
      const list = await json(await api(base));
      expect(list.snapshots.find((s: { id: string }) => s.id === safety.snapshotId).tags).toContain(
        "pre-restore",
      );

      const undo = await api(`${base}/${safety.snapshotId}/restore`, { method: "POST", json: {} });
      expect(undo.status).toBe(202);
      await notified("restore_done", 2);
      expect(files()).toEqual(damaged);
    });

    it("the nightly job creates exactly one run per workspace across two replicas", async () => {
      const replica = () =>
        new BackupService({
          store: cp.deps.store,
          driver: cp.deps.driver,
          metrics: cp.deps.metrics,
          log: cp.deps.log,
          nightlyWindow: { startHour: 1, hours: 4 },
        });
      const a = replica();
      const b = replica();
      const now = new Date(`${new Date().toISOString().slice(0, 10)}T05:30:00Z`); // after every slot
      const created = await Promise.all([
        a.nightlyTick(now),
        b.nightlyTick(now),
        a.nightlyTick(now),
        b.nightlyTick(now),
      ]);
      expect(created.reduce((x, y) => x + y, 0)).toBe(1);
      expect(await a.nightlyTick(now)).toBe(0);
      const rows = await pool.query(
        "SELECT id FROM backups WHERE workspace_id = $1 AND trigger = 'nightly'",
        [workspaceId],
      );
      expect(rows.rows).toHaveLength(1);
      expect((await waitRun(rows.rows[0].id, "the nightly run")).status).toBe("succeeded");
      // The gauge of workspaces with no successful backup in 36 h: none now, this one 40 h from now.
      expect(await a.refreshStaleGauge()).toBe(0);
      expect(await a.refreshStaleGauge(new Date(Date.now() + 40 * 3600_000))).toBe(1);
      expect(await (await cp.api("/metrics")).text()).toMatch(/backup_stale_workspaces 1/);
    });

    it("hibernate runs the pre-stop backup; export of the hibernated workspace lists exactly the backed-up files", async () => {
      const res = await api(`/api/v1/workspaces/${workspaceId}/hibernate`, { method: "POST" });
      expect(res.status).toBe(202);
      await waitFor(
        "hibernated",
        async () => {
          const r = await pool.query("SELECT state FROM workspaces WHERE id = $1", [workspaceId]);
          return r.rows[0].state === "hibernated";
        },
        90_000,
        200,
      );
      const pre = await pool.query(
        "SELECT status, snapshot_id FROM backups WHERE workspace_id = $1 AND trigger = 'pre-stop'",
        [workspaceId],
      );
      expect(pre.rows).toEqual([
        { status: "succeeded", snapshot_id: expect.stringMatching(/^[0-9a-f]{64}$/) },
      ]);
      const audited = await pool.query(
        "SELECT details->>'actor' AS actor, details->>'trigger' AS trigger FROM audit_log WHERE action = 'backup.request' AND target_id = $1",
        [workspaceId],
      );
      expect(audited.rows).toEqual(
        expect.arrayContaining([
          { actor: "system:backups", trigger: "nightly" },
          { actor: "system:backups", trigger: "pre-stop" },
        ]),
      );

      const exported = await api(`${base}/${pre.rows[0].snapshot_id}/export`);
      expect(exported.status).toBe(200);
      expect(exported.headers.get("content-type")).toBe("application/gzip");
      const tar = gunzipSync(Buffer.from(await exported.arrayBuffer()));
      // Rooted at the workspace (`user/...`), not at this machine's path to the volume.
      const inTar = tarFiles(tar).filter((p) => p.startsWith("user/"));
      const listed = (await json(await api(`${base}/${pre.rows[0].snapshot_id}/files`))).files
        .filter((f: { type: string; path: string }) => f.type === "file" && f.path.startsWith("user/"))
        .map((f: { path: string }) => f.path);
      expect(inTar.sort()).toEqual(listed.sort());
      expect(inTar).toEqual(
        expect.arrayContaining(["user/projects/app/main.ts", "user/projects/app/blob.bin"]),
      );
    });

    it("a pre-stop backup against a dead endpoint fails, is notified, and the hibernate still happens", async () => {
      await api(`/api/v1/workspaces/${workspaceId}/wake`, { method: "POST" });
      await waitFor(
        "ready again",
        async () => {
          const r = await pool.query("SELECT state FROM workspaces WHERE id = $1", [workspaceId]);
          return r.rows[0].state === "ready";
        },
        90_000,
        200,
      );
      proxy.mode = "down";
      try {
        await api(`/api/v1/workspaces/${workspaceId}/hibernate`, { method: "POST" });
        await waitFor(
          "hibernated despite the failed backup",
          async () => {
            const r = await pool.query("SELECT state FROM workspaces WHERE id = $1", [workspaceId]);
            return r.rows[0].state === "hibernated";
          },
          120_000,
          200,
        );
      } finally {
        proxy.mode = "pass";
      }
      const rows = await pool.query(
        "SELECT status, error FROM backups WHERE workspace_id = $1 AND trigger = 'pre-stop' ORDER BY created_at",
        [workspaceId],
      );
      expect(rows.rows).toHaveLength(2);
      expect(rows.rows[1].status).toBe("failed");
      expect(rows.rows[1].error).toMatch(/backup storage could not be reached/);
      const n = await pool.query(
        "SELECT body FROM notifications WHERE workspace_id = $1 AND kind = 'backup_failed'",
        [workspaceId],
      );
      expect(n.rows).toHaveLength(1);
      expect(n.rows[0].body).toMatch(/pre-stop backup failed: the backup storage could not be reached/);
      const metrics = await (await cp.api("/metrics")).text();
      expect(metrics).toMatch(/backup_runs_total\{trigger="pre-stop",result="failed"\} 1/);
      expect(metrics).toMatch(/backup_runs_total\{trigger="manual",result="succeeded"\} 1/);
    });

    it("no secret in a log line, a restic argv or an API answer", async () => {
      const password = (await cp.deps.store
        .as({ kind: "system", role: "backups", onBehalfOf: null })
        .secrets.read(workspaceId, "restic-password"))!;
      const agentLog = readFileSync(join(cp.workspacesRoot, workspaceId, "run", "agent.log"), "utf8");
      expect(argv.length).toBeGreaterThan(0);
      expect(logLines.length).toBeGreaterThan(0);
      for (const secret of [password, s3.secretAccessKey, s3.accessKeyId]) {
        for (const [where, text] of [
          ["control-plane log", logLines.join("")],
          ["agent log", agentLog],
          ["restic argv", argv.join("\n")],
          ["API answers", answers.join("\n")],
        ] as const)
          expect(text.includes(secret), `${where} holds a secret`).toBe(false);
      }
    });
  },
);

describe.skipIf(RESTIC_MISSING)("export, the download abandoned", () => {
  it("a client that goes away mid-download leaves no restic dump running (nor its repository lock)", async () => {
    const work = mkdtempSync(join(tmpdir(), "berth-export-"));
    let leftovers = (): string[] => [];
    try {
      const repo = join(work, "repo");
      const password = "export-test-password";
      const src = join(work, "ws");
      mkdirSync(join(src, "user"), { recursive: true });
      // Random, so more than every pipe and gzip buffer on the way holds.
      for (let i = 0; i < 16; i++) writeFileSync(join(src, "user", `f${i}`), randomBytes(2 << 20));
      const restic = new Restic({ url: repo, password: { value: password } });
      await restic.ensureInit();
      const { snapshotId } = await restic.backup(["user"], { cwd: src });
      const scope = { backups: { list: async () => [] }, audit: async () => {} };
      const store = { as: () => ({ secrets: { read: async () => password } }) };
      const service = new BackupService({
        store: store as never,
        driver: { backupRepository: () => ({ url: repo }) },
        metrics: {} as never,
        log: createLogger("silent"),
      });
      const { stream } = await service.export(scope as never, "ws-export", snapshotId);
      // The first bytes arrive; then the client disconnects, and Koa destroys the body stream.
      await new Promise((resolve) => stream.once("data", resolve));
      stream.destroy();
      const dumps = () =>
        readdirSync("/proc")
          .filter((n) => /^\d+$/.test(n))
          .filter((pid) => {
            try {
              const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
              return argv[0]?.endsWith("restic") && argv.includes("dump") && argv.includes(snapshotId);
            } catch {
              return false;
            }
          });
      leftovers = dumps;
      await waitFor("the abandoned restic dump to end", () => dumps().length === 0, 20_000, 100);
      await waitFor("its lock to be gone", () => readdirSync(join(repo, "locks")).length === 0, 20_000, 100);
    } finally {
      // Only this test's own restic (its snapshot id in argv), should the fix be missing.
      for (const pid of leftovers()) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {}
      }
      rmSync(work, { recursive: true, force: true });
    }
  }, 120_000);
});

/** File names in a ustar archive (restic writes plain ustar/PAX headers). */
function tarFiles(tar: Buffer): string[] {
  const out: string[] = [];
  let off = 0;
  let longName: string | null = null;
  while (off + 512 <= tar.length) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const name = header.subarray(0, 100).toString("utf8").replace(/\0.*$/s, "");
    const prefix = header.subarray(345, 500).toString("utf8").replace(/\0.*$/s, "");
    const size = Number.parseInt(
      header.subarray(124, 136).toString("utf8").replace(/\0.*$/s, "").trim() || "0",
      8,
    );
    const type = String.fromCharCode(header[156]!);
    const body = tar.subarray(off + 512, off + 512 + size);
    if (type === "x") {
      const m = /\d+ path=([^\n]*)\n/.exec(body.toString("utf8"));
      longName = m ? m[1]! : null;
    } else if (type === "L") {
      longName = body.toString("utf8").replace(/\0.*$/s, "");
    } else {
      const full = longName ?? (prefix ? `${prefix}/${name}` : name);
      if (type === "0" || type === "\0") out.push(full.replace(/^\/+/, ""));
      longName = null;
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}
