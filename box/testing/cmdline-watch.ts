/**
 * Reads every process's command line (/proc/<pid>/cmdline) over and over while a test does something, and
 * records each one that contains a needle: how tests show a secret never appears on any command line.
 */
import { readdirSync, readFileSync } from "node:fs";

export interface CmdlineWatch {
  hits: string[];
  readonly scans: number;
  stop(): Promise<void>;
}

export function watchCmdlines(needles: () => readonly string[]): CmdlineWatch {
  const hits: string[] = [];
  let scans = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
        let cmdline: string;
        try {
          cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
        } catch {
          continue; // it exited meanwhile
        }
        for (const n of needles())
          if (cmdline.includes(n)) hits.push(`${pid}: ${cmdline.replaceAll("\0", " ").slice(0, 300)}`);
      }
      scans++;
      await new Promise((r) => setImmediate(r));
    }
  })();
  return {
    hits,
    get scans() {
      return scans;
    },
    async stop() {
      running = false;
      await loop;
    },
  };
}
