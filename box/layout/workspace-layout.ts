/**
 * The workspace tree (the seed spec's "Workspace Layout") under the workspace root, enforced idempotently:
 *
 *   user/home user/projects user/.ssh user/.claude      the box user's, .ssh 0700
 *   user/home/{.claude,.ssh,projects} → ../<name>       links, so ~/.claude, ~/.ssh and ~/projects work
 *   user/home/.bashrc                                   a starter (short prompt), only into an unused home
 *   system/logs (+ logs/sessions)                        the box user's: tmux (running as the user) writes captures there
 *   system/backups system/state                          the agent's (root on a VM), 0700
 *
 * Missing directories are created; existing ones get their owner and mode fixed (not recursively: the
 * contents are the user's). Anything in the way that is not a directory (a file, a symlink) is an error
 * naming the path: we never delete, move or overwrite user data to make the layout fit.
 */
import {
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";

export class LayoutError extends Error {
  override name = "LayoutError";
  readonly path: string;
  constructor(path: string, message: string) {
    super(`workspace layout: ${path}: ${message}`);
    this.path = path;
  }
}

export interface Owner {
  uid: number;
  gid: number;
}

export interface LayoutPaths {
  root: string;
  home: string;
  projects: string;
  ssh: string;
  claude: string;
  logs: string;
  sessionLogs: string;
  backups: string;
  state: string;
}

export function layoutPaths(root: string): LayoutPaths {
  return {
    root,
    home: join(root, "user", "home"),
    projects: join(root, "user", "projects"),
    ssh: join(root, "user", ".ssh"),
    claude: join(root, "user", ".claude"),
    logs: join(root, "system", "logs"),
    sessionLogs: join(root, "system", "logs", "sessions"),
    backups: join(root, "system", "backups"),
    state: join(root, "system", "state"),
  };
}

interface DirSpec {
  path: string;
  mode: number;
  owner: "user" | "agent";
  /** Only force the mode when it matters for safety (.ssh, agent-private dirs); otherwise respect the user's. */
  enforceMode: boolean;
}

export interface EnsureLayoutOptions {
  root: string;
  /** The box user. Null: leave ownership alone (local mode, where we already run as that user). */
  user: Owner | null;
  /** The agent's own identity for system/state and system/backups (root on a VM). */
  agent?: Owner | null;
}

export interface LayoutReport {
  paths: LayoutPaths;
  created: string[];
  fixed: string[];
  /** Things left alone that the user should know about (never errors: the workspace still works). */
  warnings: string[];
}

export function ensureLayout(options: EnsureLayoutOptions): LayoutReport {
  const p = layoutPaths(options.root);
  const specs: DirSpec[] = [
    { path: join(options.root, "user"), mode: 0o755, owner: "user", enforceMode: false },
    { path: p.home, mode: 0o755, owner: "user", enforceMode: false },
    { path: p.projects, mode: 0o755, owner: "user", enforceMode: false },
    { path: p.ssh, mode: 0o700, owner: "user", enforceMode: true },
    { path: p.claude, mode: 0o755, owner: "user", enforceMode: false },
    { path: join(options.root, "system"), mode: 0o755, owner: "agent", enforceMode: false },
    { path: p.logs, mode: 0o755, owner: "user", enforceMode: false },
    { path: p.sessionLogs, mode: 0o755, owner: "user", enforceMode: false },
    { path: p.backups, mode: 0o700, owner: "agent", enforceMode: true },
    { path: p.state, mode: 0o700, owner: "agent", enforceMode: true },
  ];
  const report: LayoutReport = { paths: p, created: [], fixed: [], warnings: [] };
  checkDir(options.root, "the workspace root");
  for (const spec of specs) {
    const owner = spec.owner === "user" ? options.user : (options.agent ?? null);
    ensureDir(spec, owner, report);
  }
  // Programs look in ~/.claude and ~/.ssh; the seed keeps them beside home, so home links to them.
  // Relative links resolve inside the workspace both through /home/<user> and in local mode.
  // ~/projects leads to the projects beside home too: the panes start there, so a prompt reads
  // `~/projects$` instead of the volume's full path.
  for (const name of [".claude", ".ssh", "projects"])
    ensureDotLink(join(p.home, name), `../${name}`, options.user, report);
  seedBashrc(p.home, options.user, report);
  return report;
}

/** What Berth itself puts in a home; a home holding nothing else has never been used. */
const BERTH_HOME_ENTRIES = new Set([".claude", ".ssh", "projects"]);

/**
 * The starter `~/.bashrc` of a new home, as /etc/skel gives one to a new user: a short prompt (the
 * directory with `~`, trimmed to its last three parts) that fits a phone-width pane, and the usual history
 * and `ls` settings. Written only into a home that has never been used (nothing in it but Berth's own
 * links), so a user's rc file, or their choice to have none, is never overridden.
 */
export const STARTER_BASHRC = `# ~/.bashrc: Berth's starter, written once into a new workspace home. It is yours to change; Berth
# never writes it again.
case $- in *i*) ;; *) return ;; esac

HISTCONTROL=ignoreboth
HISTSIZE=10000
HISTFILESIZE=20000
shopt -s histappend checkwinsize

# A short prompt that fits a phone-width pane: the directory, ~ for home, at most its last three parts.
PROMPT_DIRTRIM=3
PS1='\\[\\e[1;36m\\]\\w\\[\\e[0m\\]\\$ '

ls --color=auto -d / >/dev/null 2>&1 && alias ls='ls --color=auto'
alias ll='ls -alF'
`;

function seedBashrc(home: string, owner: Owner | null, report: LayoutReport): void {
  // The agent is root on a VM and home is the user's: go through a descriptor of the directory checked
  // above (no symlink), so swapping home for a link to /root between the check and the write cannot
  // plant a file elsewhere. /proc/self/fd/<fd> is Linux's openat() for Node; elsewhere (local mode on a
  // developer's machine, where the agent is the user) the path itself is used.
  const dirFd = openSync(home, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    const dir = existsSync(`/proc/self/fd/${dirFd}`) ? `/proc/self/fd/${dirFd}` : home;
    if (!readdirSync(dir).every((name) => BERTH_HOME_ENTRIES.has(name))) return;
    let fd: number;
    try {
      // O_EXCL|O_NOFOLLOW: never through a link, never over a file that appeared meanwhile.
      fd = openSync(
        join(dir, ".bashrc"),
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o644,
      );
    } catch (err) {
      report.warnings.push(
        `${join(home, ".bashrc")}: starter not written (${(err as NodeJS.ErrnoException).code})`,
      );
      return;
    }
    try {
      writeSync(fd, STARTER_BASHRC);
      if (owner) fchownSync(fd, owner.uid, owner.gid);
    } finally {
      closeSync(fd);
    }
    report.created.push(join(home, ".bashrc"));
  } finally {
    closeSync(dirFd);
  }
}

function ensureDotLink(link: string, target: string, owner: Owner | null, report: LayoutReport): void {
  let st: ReturnType<typeof lstatSync> | null = null;
  try {
    st = lstatSync(link);
  } catch {
    // absent
  }
  if (st === null) {
    try {
      symlinkSync(target, link);
      if (owner) lchownSync(link, owner.uid, owner.gid);
    } catch (err) {
      throw new LayoutError(
        link,
        `cannot create the link to ${target} (${(err as NodeJS.ErrnoException).code})`,
      );
    }
    report.created.push(link);
  } else if (!st.isSymbolicLink())
    report.warnings.push(
      `${link} is a real ${st.isDirectory() ? "directory" : "file"}, so programs use it instead of ${target.slice(3)} beside home; left as is`,
    );
  else if (readlinkSync(link) !== target)
    report.warnings.push(`${link} points to ${readlinkSync(link)}, not ${target}; left as is`);
}

function checkDir(path: string, what: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch (err) {
    throw new LayoutError(
      path,
      `${what} does not exist or cannot be read (${(err as NodeJS.ErrnoException).code})`,
    );
  }
  if (!st.isDirectory()) throw new LayoutError(path, `${what} is not a directory`);
}

function ensureDir(spec: DirSpec, owner: Owner | null, report: LayoutReport): void {
  let created = false;
  try {
    mkdirSync(spec.path, { mode: spec.mode });
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST")
      throw new LayoutError(spec.path, `cannot create directory (${(err as NodeJS.ErrnoException).code})`);
  }
  // The agent is root and these directories belong to the box user, who could swap one for a symlink
  // at any moment: open without following links and change mode and owner through the descriptor, so a
  // swap between a check and a chmod/chown can never redirect it (to /etc/shadow, say).
  let fd: number;
  try {
    fd = openSync(spec.path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Linux reports a symlink as ENOTDIR when O_DIRECTORY and O_NOFOLLOW are both set; lstat only words it.
    const isLink =
      (code === "ELOOP" || code === "ENOTDIR") &&
      lstatSync(spec.path, { throwIfNoEntry: false })?.isSymbolicLink();
    if (isLink)
      throw new LayoutError(
        spec.path,
        "is a symlink where a directory belongs; refusing to follow or replace it",
      );
    if (code === "ENOTDIR")
      throw new LayoutError(
        spec.path,
        "is a file where a directory belongs; move it away (it is not deleted for you)",
      );
    throw new LayoutError(spec.path, `cannot open (${code})`);
  }
  try {
    const st = fstatSync(fd);
    let fixed = false;
    // mkdir's mode is filtered by the umask (the agent's unit has 0077), so set it explicitly.
    if ((created || spec.enforceMode) && (st.mode & 0o777) !== spec.mode) {
      fchmodSync(fd, spec.mode);
      fixed = true;
    }
    if (owner && (st.uid !== owner.uid || st.gid !== owner.gid)) {
      fchownSync(fd, owner.uid, owner.gid);
      fixed = true;
    }
    if (created) report.created.push(spec.path);
    else if (fixed) report.fixed.push(spec.path);
  } catch (err) {
    throw new LayoutError(spec.path, `cannot fix owner or mode (${(err as NodeJS.ErrnoException).code})`);
  } finally {
    closeSync(fd);
  }
}
