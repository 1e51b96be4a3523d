/**
 * Who listens on a TCP port on this machine, from /proc. Loopback reaches every process here, so the
 * local driver answers "is this port the workspace's own listener?" before the preview proxy dials it:
 * the LISTEN sockets on the port (/proc/net/tcp{,6}) must all be open in a process of the workspace's
 * tree (/proc/<pid>/fd links to socket:[inode]).
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

export type ListenerOwner = "workspace" | "other" | "none";

const LISTEN = "0A";

/** Inodes of the sockets listening on `port`, IPv4 and IPv6. */
export function listeningInodes(port: number, proc = "/proc"): Set<string> {
  const inodes = new Set<string>();
  for (const file of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = readFileSync(`${proc}/net/${file}`, "utf8");
    } catch {
      continue; // no IPv6 on this machine
    }
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== LISTEN) continue;
      const local = f[1]!;
      if (Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port && f[9] !== "0") {
        inodes.add(f[9]!);
      }
    }
  }
  return inodes;
}

interface Proc {
  ppid: number;
  comm: string;
}

function processTable(proc: string): Map<number, Proc> {
  const table = new Map<number, Proc>();
  for (const name of readdirSync(proc)) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`${proc}/${name}/stat`, "utf8");
      // `pid (comm) state ppid ...`; comm may itself contain spaces and parentheses.
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const ppid = Number(stat.slice(close + 2).split(" ")[1]);
      table.set(Number(name), { ppid, comm });
    } catch {
      // exited while we looked
    }
  }
  return table;
}

/**
 * The workspace's processes: the agent and its descendants, and the workspace's tmux server (which
 * daemonizes away from the agent) and its descendants, i.e. everything started in a session.
 */
export function workspaceProcesses(agentPid: number, tmuxSocket: string, proc = "/proc"): Set<number> {
  const table = processTable(proc);
  const roots = [agentPid];
  for (const [pid, p] of table) {
    if (!p.comm.startsWith("tmux")) continue;
    try {
      const argv = readFileSync(`${proc}/${pid}/cmdline`, "utf8").split("\0");
      const s = argv.indexOf("-S");
      if (p.comm === "tmux: server" && s >= 0 && argv[s + 1] === tmuxSocket) roots.push(pid);
    } catch {}
  }
  const children = new Map<number, number[]>();
  for (const [pid, p] of table) children.set(p.ppid, [...(children.get(p.ppid) ?? []), pid]);
  const tree = new Set<number>();
  const queue = roots.filter((pid) => table.has(pid));
  while (queue.length > 0) {
    const pid = queue.pop()!;
    if (tree.has(pid)) continue;
    tree.add(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** Whether every socket in `inodes` is open in one of `pids`. */
export function ownsSockets(pids: Iterable<number>, inodes: Set<string>, proc = "/proc"): boolean {
  const missing = new Set(inodes);
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`${proc}/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const link = readlinkSync(`${proc}/${pid}/fd/${fd}`);
        if (link.startsWith("socket:[")) missing.delete(link.slice(8, -1));
      } catch {}
    }
    if (missing.size === 0) return true;
  }
  return missing.size === 0;
}

/** Who listens on `port`: only the workspace, someone else (too), or nobody. */
export function listenerOwner(
  port: number,
  workspace: { agentPid: number; tmuxSocket: string },
  proc = "/proc",
): ListenerOwner {
  const inodes = listeningInodes(port, proc);
  if (inodes.size === 0) return "none";
  const pids = workspaceProcesses(workspace.agentPid, workspace.tmuxSocket, proc);
  return ownsSockets(pids, inodes, proc) ? "workspace" : "other";
}
