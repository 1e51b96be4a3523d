/** Small process helpers for the local driver: liveness, identity and a bounded graceful stop. */
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Whether `pid` is still the agent we started, not an unrelated process that reused the pid. */
export function isOurAgent(pid: number, marker: string): boolean {
  try {
    return (
      readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker) ||
      readFileSync(`/proc/${pid}/environ`, "utf8").includes(marker)
    );
  } catch {
    return false;
  }
}

/** SIGTERM, wait up to `graceMs`, then SIGKILL the whole process group. */
export async function stopProcess(pid: number, graceMs: number): Promise<"exited" | "killed"> {
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig); // the agent leads its own process group (spawned detached)
    } catch {
      try {
        process.kill(pid, sig);
      } catch {}
    }
  };
  signal("SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return "exited";
    await new Promise((r) => setTimeout(r, 50));
  }
  signal("SIGKILL");
  return "killed";
}

/** A process as found at one moment: its start time tells it from a later process given the same pid. */
export interface ProcessRef {
  pid: number;
  start: string;
}

/** `pid` as a ProcessRef, or null if it is gone or a zombie (its process has ended). */
export function processRef(pid: number, proc = "/proc"): ProcessRef | null {
  try {
    const stat = readFileSync(`${proc}/${pid}/stat`, "utf8");
    // `pid (comm) state ppid ...`: the start time is field 22, the 20th after the comm.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" || fields[0] === "X" || !fields[19]) return null;
    return { pid, start: fields[19] };
  } catch {
    return null;
  }
}

/** This user's processes whose environment has an entry `match` accepts (never this process). */
export function processesWithEnvironment(match: (entry: string) => boolean, proc = "/proc"): ProcessRef[] {
  const found: ProcessRef[] = [];
  for (const name of readdirSync(proc)) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (!readFileSync(`${proc}/${name}/environ`, "utf8").split("\0").some(match)) continue;
    } catch {
      continue; // gone, or another user's
    }
    const ref = processRef(Number(name), proc);
    if (ref) found.push(ref);
  }
  return found;
}

/** SIGTERM to each process still running as found, up to `graceMs` for them to end, then SIGKILL. */
export async function endProcesses(refs: ProcessRef[], graceMs: number): Promise<void> {
  const running = () => refs.filter((r) => processRef(r.pid)?.start === r.start);
  const signal = (sig: NodeJS.Signals) => {
    for (const r of running()) {
      try {
        process.kill(r.pid, sig);
      } catch {}
    }
  };
  signal("SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && running().length > 0) await new Promise((r) => setTimeout(r, 50));
  signal("SIGKILL");
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
