// berth-release run for real against stand-in releases in a scratch directory: download (file://), sha256
// check, unpack, switch, restart, readiness, switch back, rollback, pruning. Only `systemctl` is a stand-in
// (this machine's PID 1 is not systemd): it restarts the release's server as a background process.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../../packer/test/tools.ts";

const SCRIPT = new URL("../files/berth-release", import.meta.url).pathname;
let dir: string;
let port: number;
const shas: Record<string, string> = {};

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const p = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return p;
}

/** A release whose `serve` answers /readyz with its version, or exits at once (a broken release). */
function makeRelease(version: string, broken = false) {
  const src = join(dir, "src", version);
  mkdirSync(join(src, "runtime/app"), { recursive: true });
  writeFileSync(
    join(src, "runtime/app/cli.ts"),
    broken
      ? "process.exit(1);\n"
      : `require("node:http").createServer((q, s) => s.end(${JSON.stringify(version)})).listen(Number(process.env.BERTH_PORT), "127.0.0.1");\n`,
  );
  writeFileSync(join(src, "package.json"), '{"type":"commonjs"}\n');
  const tarball = join(dir, "www", `berth-${version}.tar.gz`);
  const t = run("tar", ["-czf", tarball, "-C", src, "."]);
  if (t.status !== 0) throw new Error(t.stderr);
  shas[version] = createHash("sha256").update(readFileSync(tarball)).digest("hex");
}

function release(...args: string[]): Promise<{ code: number; stderr: string }> {
  return releaseWith({}, ...args);
}

function releaseWith(
  extra: Record<string, string>,
  ...args: string[]
): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      "/bin/sh",
      [SCRIPT, ...args],
      {
        env: {
          PATH: `${join(dir, "bin")}:${process.env.PATH}`,
          BERTH_ETC: join(dir, "etc"),
          BERTH_ROOT: join(dir, "opt"),
          BERTH_PORT: String(port),
          BERTH_READY_TRIES: "8",
          ...extra,
        },
      },
      (err, _out, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
  });
}

const current = () => readlinkSync(join(dir, "opt/current"));
const serving = async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).text();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "berth-release-"));
  port = await freePort();
  for (const d of ["etc", "opt/node/bin", "bin", "www", "src"]) mkdirSync(join(dir, d), { recursive: true });
  symlinkSync(process.execPath, join(dir, "opt/node/bin/node"));
  writeFileSync(
    join(dir, "etc/release.env"),
    `BERTH_RELEASE_URL=file://${dir}/www/berth-{version}.tar.gz\nBERTH_PORT=${port}\n`,
  );
  // systemctl restart berth.service: stop the running server (waiting until it is gone), start the current one.
  writeFileSync(
    join(dir, "bin/systemctl"),
    `#!/bin/sh
pidfile="$BERTH_ROOT/.pid"
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
fi
# 9>&-: a service started by systemd does not inherit berth-release's lock.
cd "$BERTH_ROOT/current" && BERTH_PORT="$BERTH_PORT" "$BERTH_ROOT/node/bin/node" runtime/app/cli.ts serve >/dev/null 2>&1 9>&- &
echo $! >"$pidfile"
`,
  );
  chmodSync(join(dir, "bin/systemctl"), 0o755);
  makeRelease("1.0.0");
  makeRelease("1.1.0");
  makeRelease("1.2.0", true);
});

afterAll(() => {
  const pidfile = join(dir, "opt/.pid");
  if (existsSync(pidfile)) {
    try {
      process.kill(Number(readFileSync(pidfile, "utf8")));
    } catch {}
  }
});

describe("berth-release", () => {
  it("installs a release: verified, unpacked, switched to, serving", async () => {
    const r = await release("install", "1.0.0", shas["1.0.0"]!);
    expect(r.stderr).toContain("release 1.0.0 is serving");
    expect(r.code).toBe(0);
    expect(current()).toBe("releases/1.0.0");
    expect(await serving()).toBe("1.0.0");
  });

  it("refuses a release whose sha256 does not match, and changes nothing", async () => {
    const r = await release("install", "1.1.0", "0".repeat(64));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("does not match its pinned sha256");
    expect(current()).toBe("releases/1.0.0");
    expect(existsSync(join(dir, "opt/releases/1.1.0"))).toBe(false);
    expect(await serving()).toBe("1.0.0");
  });

  it("upgrades in place and records the previous release", async () => {
    const r = await release("install", "1.1.0", shas["1.1.0"]!);
    expect(r.code).toBe(0);
    expect(current()).toBe("releases/1.1.0");
    expect(readFileSync(join(dir, "opt/previous"), "utf8").trim()).toBe("1.0.0");
    expect(await serving()).toBe("1.1.0");
  });

  it("switches back when a new release does not become ready, and marks it failed", async () => {
    const r = await release("install", "1.2.0", shas["1.2.0"]!);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("switching back to 1.1.0");
    expect(current()).toBe("releases/1.1.0");
    expect(existsSync(join(dir, "opt/failed-1.2.0"))).toBe(true);
    expect(await serving()).toBe("1.1.0");
  });

  it("rolls back to the previous release on request, and keeps only current and previous on disk", async () => {
    // Previous is 1.0.0 again after the failed 1.2.0, not 1.1.0 (the release it fell back to).
    expect(readFileSync(join(dir, "opt/previous"), "utf8").trim()).toBe("1.0.0");
    const r = await release("rollback");
    expect(r.stderr).toContain("rolled back to 1.0.0");
    expect(r.code).toBe(0);
    expect(current()).toBe("releases/1.0.0");
    expect(await serving()).toBe("1.0.0");
    const again = await release("install", "1.1.0", shas["1.1.0"]!);
    expect(again.code).toBe(0);
    expect(
      run("ls", [join(dir, "opt/releases")])
        .stdout.trim()
        .split("\n")
        .sort(),
    ).toEqual(["1.0.0", "1.1.0"]);
  });

  it("sync: installs the release this server's Hetzner labels name, asking with the credential's token", async () => {
    const token = "hcloud-token-from-credential";
    const labels: Record<string, string> = {};
    const seen: string[] = [];
    const api = createHttpServer((req, res) => {
      seen.push(`${req.url} ${req.headers.authorization ?? "-"}`);
      if (req.url === "/metadata/instance-id") return res.end("4242");
      if (req.url === "/v1/servers/4242" && req.headers.authorization === `Bearer ${token}`) {
        return res.end(JSON.stringify({ server: { id: 4242, labels } }));
      }
      res.writeHead(401).end("{}");
    });
    await new Promise<void>((r) => api.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(api.address() as { port: number }).port}`;
    const creds = join(dir, "creds");
    mkdirSync(creds, { recursive: true });
    writeFileSync(join(creds, "HCLOUD_TOKEN"), token);
    const env = {
      BERTH_METADATA_URL: `${base}/metadata`,
      HCLOUD_ENDPOINT: `${base}/v1`,
      CREDENTIALS_DIRECTORY: creds,
    };
    try {
      // No label yet: nothing to do.
      expect((await releaseWith(env, "sync")).stderr).toContain("no berth-release label");
      // The labels name 1.0.0 (the digest split in two, as the infra program sets them).
      Object.assign(labels, {
        "berth-release": "1.0.0",
        "berth-release-sha256-a": shas["1.0.0"]!.slice(0, 32),
        "berth-release-sha256-b": shas["1.0.0"]!.slice(32),
      });
      const r = await releaseWith(env, "sync");
      expect(r.stderr).toContain("release 1.0.0 is serving");
      expect(r.code).toBe(0);
      expect(current()).toBe("releases/1.0.0");
      expect(await serving()).toBe("1.0.0");
      // Already current: a no-op.
      expect((await releaseWith(env, "sync")).code).toBe(0);
      expect(seen).toContain(`/v1/servers/4242 Bearer ${token}`);
    } finally {
      await new Promise<void>((r) => api.close(() => r()));
    }
  });
});
