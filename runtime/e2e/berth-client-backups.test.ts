/**
 * `berth backup` and `berth export` as a user runs them (child processes, their own config dir) against a
 * real local control plane whose workspace backs up with real restic to the default repository under the
 * data dir: back up a file, list the snapshot, damage the file, restore it (the safety snapshot first,
 * then the restore, followed to its end), export the snapshot to a 0600 file and to a pipe; refusals with
 * the documented exit codes.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { RESTIC_MISSING } from "../../box/testing/restic.ts";
import { createReadyWorkspace, startLocalControlPlane } from "../test/local-control-plane.ts";

const CLIENT = fileURLToPath(new URL("../app/client/main.ts", import.meta.url));

const haveRestic = RESTIC_MISSING === null;
if (!haveRestic) console.warn(`berth backup client test skipped: ${RESTIC_MISSING}`);

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

describe.skipIf(!haveRestic)(
  "berth backup and export against a local control plane",
  { timeout: 240_000 },
  async () => {
    if (!haveRestic) return;
    const cp = await startLocalControlPlane();
    const config = mkdtempSync(join(tmpdir(), "berth-client-"));
    const berth = (args: string[], stdin = ""): Promise<Run> =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [CLIENT, ...args], {
          env: { ...process.env, XDG_CONFIG_HOME: config, BERTH_TOKEN: "" },
        });
        const out: Buffer[] = [];
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => out.push(d));
        child.stderr.on("data", (d) => (stderr += d));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
        child.stdin.end(stdin);
      });

    let file = "";
    let shortId = "";

    it("backs up a workspace, following the run, and lists the snapshot", async () => {
      expect((await berth(["login", cp.url], `${cp.localToken}\n`)).code).toBe(0);
      const workspaceId = await createReadyWorkspace(cp, "backup-box");
      file = join(cp.workspacesRoot, workspaceId, "volume", "user", "projects", "hello.txt");
      writeFileSync(file, "hello, version one\n");

      const none = await berth(["backup", "list", "backup-box"]);
      expect(none.code, none.stderr).toBe(0);
      expect(none.stderr).toContain("No snapshots yet");

      const created = await berth(["backup", "create", "backup-box"]);
      expect(created.code, created.stderr).toBe(0);
      expect(created.stderr).toMatch(/backup-box: backup done: snapshot [0-9a-f]{8}, \d+ files/);

      const list = await berth(["backup", "list", "backup-box", "--json"]);
      expect(list.code).toBe(0);
      const { snapshots, runs } = JSON.parse(list.stdout.toString());
      expect(snapshots).toHaveLength(1);
      expect(runs[0]).toMatchObject({ trigger: "manual", status: "succeeded" });
      shortId = snapshots[0].shortId;
      const table = await berth(["backup", "list", "backup-box"]);
      expect(table.stdout.toString()).toMatch(
        new RegExp(`^SNAPSHOT\\s+TIME\\s+TRIGGER[^\\n]*\\n${shortId}\\s`),
      );
    });

    it("refuses what is wrong with the documented exit codes", async () => {
      // A restore replaces files: it needs --yes.
      expect((await berth(["backup", "restore", "backup-box", shortId])).code).toBe(2);
      const unknown = await berth(["backup", "restore", "backup-box", "abcdef12", "--yes"]);
      expect(unknown.code).toBe(4);
      expect(unknown.stderr).toContain("no snapshot 'abcdef12'");
      const outside = await berth(["backup", "restore", "backup-box", shortId, "etc/passwd", "--yes"]);
      expect(outside.code).toBe(2);
      expect(outside.stderr).toContain("outside the workspace layout");
      expect((await berth(["backup", "list", "no-such-box"])).code).toBe(4);
      expect((await berth(["backup", "bogus", "backup-box"])).code).toBe(2);
      for (const command of ["backup", "export"]) {
        const help = await berth([command, "--help"]);
        expect(help.code).toBe(0);
        expect(help.stdout.toString()).toMatch(/^Usage: berth /);
      }
    });

    it("restores a damaged file from the snapshot and says how to undo it", async () => {
      writeFileSync(file, "damaged\n");
      const restored = await berth([
        "backup",
        "restore",
        "backup-box",
        shortId,
        "user/projects/hello.txt",
        "--yes",
      ]);
      expect(restored.code, restored.stderr).toBe(0);
      expect(restored.stderr).toMatch(
        new RegExp(
          `restored user/projects/hello.txt from ${shortId}; the state before is snapshot [0-9a-f]{8}`,
        ),
      );
      expect(readFileSync(file, "utf8")).toBe("hello, version one\n");
      // The safety snapshot is listed with the others.
      const { snapshots } = JSON.parse(
        (await berth(["backup", "list", "backup-box", "--json"])).stdout.toString(),
      );
      expect(snapshots.map((s: { trigger: string }) => s.trigger)).toContain("pre-restore");
    });

    it("exports a snapshot to a 0600 file, and to a pipe", async () => {
      const out = join(mkdtempSync(join(tmpdir(), "berth-export-")), "backup.tar.gz");
      const exported = await berth(["export", "backup-box", shortId, "-o", out]);
      expect(exported.code, exported.stderr).toBe(0);
      expect(exported.stderr).toContain(`exported to ${out}`);
      expect(statSync(out).mode & 0o777).toBe(0o600);
      const tar = gunzipSync(readFileSync(out)).toString("latin1");
      expect(tar).toContain("user/projects/hello.txt");
      expect(tar).toContain("hello, version one");

      const piped = await berth(["export", "backup-box", shortId]);
      expect(piped.code, piped.stderr).toBe(0);
      expect(gunzipSync(piped.stdout).toString("latin1")).toContain("hello, version one");
    });
  },
);
