import { execFileSync } from "node:child_process";

/** Why restic cannot run here (backup tests and benches skip, saying so), or null when it is on PATH. */
export const RESTIC_MISSING: string | null = (() => {
  try {
    execFileSync("restic", ["version"], { stdio: "ignore" });
    return null;
  } catch {
    return "restic is not on PATH";
  }
})();
