// The control-plane host's scripts and units as shipped in files/: shellcheck, systemd-analyze verify, and
// the properties the issue asks of them (hardening, restart, credentials only through LoadCredential=).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseUnit, value, values } from "../../packer/systemd-unit.ts";
import { canVerify, verify } from "../../packer/test/systemd-verify.ts";
import { run, which } from "../../packer/test/tools.ts";
import { CREDENTIALS_DIR, HOST_FILES } from "./cloud-init.ts";

const FILES = new URL("./files/", import.meta.url).pathname;
const read = (rel: string) => readFileSync(join(FILES, rel), "utf8");
const SCRIPTS = HOST_FILES.filter((f) => !f.source.startsWith("systemd/")).map((f) => f.source);
const UNITS = readdirSync(join(FILES, "systemd")).filter((n) => /\.(service|timer)$/.test(n));
const shellcheck = which("shellcheck");

describe("control-plane host scripts", () => {
  it("ships every script in files/, and nothing in files/ goes unshipped", () => {
    const shipped = HOST_FILES.map((f) => f.source).sort();
    const present = [
      ...readdirSync(FILES, { withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => e.name),
      ...readdirSync(join(FILES, "systemd")).map((n) => `systemd/${n}`),
    ].sort();
    expect(shipped).toEqual(present);
    for (const s of SCRIPTS) expect(read(s).split("\n")[0]).toBe("#!/bin/sh");
  });

  it.skipIf(!shellcheck)("pass shellcheck", () => {
    const r = run(shellcheck!, ["--external-sources", "--format=gcc", ...SCRIPTS], { cwd: FILES });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it.runIf(!shellcheck)("notes that shellcheck was skipped", () => {
    console.warn("shellcheck is not on PATH: install the Debian package `shellcheck`");
  });

  it("keep secrets off command lines: the tailnet key and the Hetzner token go through files and stdin", () => {
    expect(read("berth-install")).toContain('--auth-key="file:$key"');
    expect(read("berth-release")).toMatch(
      /printf 'header = "Authorization: Bearer %s"\\n'.*\|\s*\n\s*curl -fsS --config -/s,
    );
    for (const s of SCRIPTS) expect(read(s)).not.toContain("/etc/environment");
  });

  it("verify a release against its pinned sha256 and switch back when it does not become ready", () => {
    const release = read("berth-release");
    expect(release).toContain("sha256sum -c --quiet -");
    expect(release).toContain("/readyz");
    expect(release).toMatch(/switching back to \$previous/);
    expect(release).toContain("pg_dump");
  });
});

describe("control-plane host units", () => {
  const texts = Object.fromEntries(UNITS.map((n) => [n, read(`systemd/${n}`)]));

  it.skipIf(!canVerify)("pass systemd-analyze verify without a warning", () => {
    const r = verify(texts);
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it.skipIf(!canVerify)("the drop-ins verify as part of the units they extend", () => {
    // The distribution's ExecStart first; the drop-in empties and replaces it.
    const caddy = `[Service]\nExecStart=/usr/bin/caddy run --environ --config /etc/caddy/Caddyfile\n${read("systemd/caddy-berth.conf").replace("[Service]\n", "")}`;
    const pg = `${read("systemd/postgresql-berth.conf")}[Service]\nExecStart=/usr/bin/pg_ctlcluster 16 main start\n`;
    const r = verify({ "caddy.service": caddy, "postgresql@.service": pg });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it.skipIf(!canVerify)("would report a unit with a bad value", () => {
    const r = verify({
      "berth.service": texts["berth.service"]!.replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe"),
    });
    expect(r.stderr).toContain("Failed to parse boolean value");
  });

  it("berth.service: unprivileged, hardened, restarts, and gets its secrets only through LoadCredential=", () => {
    const u = parseUnit(texts["berth.service"]!);
    expect(value(u, "Service", "User")).toBe("berth");
    expect(value(u, "Service", "Restart")).toBe("always");
    expect(values(u, "Service", "LoadCredential")).toEqual([`berth:${CREDENTIALS_DIR}`]);
    expect(values(u, "Service", "EnvironmentFile")).toEqual(["/etc/berth/berth.env", "-/etc/berth/host.env"]);
    expect(values(u, "Service", "Environment")).toEqual([]);
    for (const [key, v] of [
      ["NoNewPrivileges", "yes"],
      ["ProtectSystem", "strict"],
      ["ProtectHome", "yes"],
      ["PrivateTmp", "yes"],
      ["PrivateDevices", "yes"],
      ["CapabilityBoundingSet", ""],
      ["ProtectProc", "invisible"],
    ]) {
      expect(value(u, "Service", key!), key).toBe(v);
    }
    expect(value(u, "Install", "WantedBy")).toBe("multi-user.target");
    // BERTH_WORKERS > 1: the supervisor alone is signalled and stops its workers once each (see the unit).
    expect(value(u, "Service", "KillMode")).toBe("mixed");
    for (const text of Object.values(texts)) expect(text).not.toContain("/etc/environment");
  });

  it("the upgrade timer runs the label sync with the Hetzner token as its only credential", () => {
    const svc = parseUnit(texts["berth-upgrade.service"]!);
    expect(value(svc, "Service", "ExecStart")).toBe("/usr/local/sbin/berth-release sync");
    expect(values(svc, "Service", "LoadCredential")).toEqual([
      `HCLOUD_TOKEN:${CREDENTIALS_DIR}/HCLOUD_TOKEN`,
    ]);
    const timer = parseUnit(texts["berth-upgrade.timer"]!);
    expect(value(timer, "Timer", "OnUnitActiveSec")).toBe("5min");
  });

  it("Caddy gets its DNS token from its own credential through berth-caddy-start, never --environ", () => {
    const dropIn = parseUnit(read("systemd/caddy-berth.conf"));
    expect(values(dropIn, "Service", "ExecStart")).toEqual(["", "/usr/local/lib/berth/berth-caddy-start"]);
    expect(values(dropIn, "Service", "LoadCredential")).toEqual(["caddy:/etc/berth/caddy-credentials"]);
    expect(read("berth-caddy-start")).not.toMatch(/^exec .*--environ/m);
  });

  it("the database is dumped nightly, and Postgres waits for its volume", () => {
    expect(value(parseUnit(texts["berth-db-backup.timer"]!), "Timer", "Persistent")).toBe("true");
    expect(value(parseUnit(read("systemd/postgresql-berth.conf")), "Unit", "RequiresMountsFor")).toBe(
      "/var/lib/postgresql",
    );
  });
});

describe("berth-start", () => {
  // A stand-in release whose cli.ts prints what it was started with.
  function fixture() {
    const root = mkdtempSync(join(tmpdir(), "berth-start-"));
    mkdirSync(join(root, "current/runtime/app"), { recursive: true });
    mkdirSync(join(root, "node/bin"), { recursive: true });
    symlinkSync(process.execPath, join(root, "node/bin/node"));
    writeFileSync(
      join(root, "current/runtime/app/cli.ts"),
      "console.log(JSON.stringify({ argv: process.argv.slice(2), HCLOUD_TOKEN: process.env.HCLOUD_TOKEN, DATABASE_URL: process.env.DATABASE_URL, bad: Object.keys(process.env).filter((k) => k.includes('-')) }));\n",
    );
    const creds = join(root, "credentials");
    mkdirSync(creds);
    writeFileSync(join(creds, "berth_HCLOUD_TOKEN"), "hcloud-token-value\n");
    writeFileSync(join(creds, "berth_DATABASE_URL"), "postgres://u:p@db/berth");
    writeFileSync(join(creds, "berth_not-a-name"), "x");
    return { root, creds };
  }

  it("exports each berth_* credential as its variable and starts serve, or the command it is given", () => {
    const { root, creds } = fixture();
    const env = { PATH: process.env.PATH ?? "", BERTH_ROOT: root, CREDENTIALS_DIRECTORY: creds };
    const serve = run("/bin/sh", [join(FILES, "berth-start")], { env });
    expect(serve.status).toBe(0);
    // $(cat) drops the trailing newline, as the control plane expects.
    expect(JSON.parse(serve.stdout)).toEqual({
      argv: ["serve"],
      HCLOUD_TOKEN: "hcloud-token-value",
      DATABASE_URL: "postgres://u:p@db/berth",
      bad: [],
    });
    expect(serve.stderr).toContain("ignoring credential file 'not-a-name'");
    const doctor = run("/bin/sh", [join(FILES, "berth-start"), "doctor"], { env });
    expect(JSON.parse(doctor.stdout).argv).toEqual(["doctor"]);
  });

  it("refuses to run outside systemd's credentials", () => {
    const r = run("/bin/sh", [join(FILES, "berth-start")], { env: { PATH: process.env.PATH ?? "" } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("LoadCredential");
  });
});
