/** Small process helpers for the local driver: liveness, identity and a bounded graceful stop. */
import { readFileSync } from "node:fs";
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
