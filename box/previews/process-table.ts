/**
 * Just enough of /proc to attribute listening sockets to processes: parent pids, owners, command lines and
 * the `socket:[inode]` links under /proc/<pid>/fd. Processes come and go while we read, so every read
 * tolerates the process having vanished.
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { join } from "node:path";

export interface ProcessEntry {
  pid: number;
  ppid: number;
  uid: number;
}

export function listProcesses(procRoot = "/proc"): Map<number, ProcessEntry> {
  const out = new Map<number, ProcessEntry>();
  for (const name of readdirSync(procRoot)) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(join(procRoot, name, "stat"), "utf8");
      // comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const pid = Number(name);
      out.set(pid, { pid, ppid: Number(rest[1]), uid: statSync(join(procRoot, name)).uid });
    } catch {
      // gone already
    }
  }
  return out;
}

/** Whether `pid` is one of `roots` or descends from one. */
export function descendsFrom(
  pid: number,
  roots: ReadonlySet<number>,
  table: Map<number, ProcessEntry>,
): boolean {
  let cur: number | undefined = pid;
  for (let hops = 0; cur !== undefined && cur > 0 && hops < 4096; hops++) {
    if (roots.has(cur)) return true;
    cur = table.get(cur)?.ppid;
  }
  return false;
}

/** Maps the wanted socket inodes to the pid holding them, looking only at `pids`. */
export function socketOwners(
  inodes: ReadonlySet<number>,
  pids: Iterable<number>,
  procRoot = "/proc",
): Map<number, number> {
  const found = new Map<number, number>();
  for (const pid of pids) {
    if (found.size === inodes.size) break;
    let fds: string[];
    try {
      fds = readdirSync(join(procRoot, String(pid), "fd"));
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(join(procRoot, String(pid), "fd", fd));
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(Number(m[1])) && !found.has(Number(m[1]))) found.set(Number(m[1]), pid);
    }
  }
  return found;
}

export function readCmdline(pid: number, procRoot = "/proc"): string[] {
  try {
    const raw = readFileSync(join(procRoot, String(pid), "cmdline"), "utf8");
    const args = raw.split("\0");
    if (args.at(-1) === "") args.pop();
    // A process that rewrote its title may use spaces instead of NULs.
    return args.length === 1 && args[0]!.includes(" ") && !args[0]!.includes("(")
      ? args[0]!.split(" ")
      : args;
  } catch {
    return [];
  }
}
