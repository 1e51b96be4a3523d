import { commandRuns } from "./command-runs.ts";

/** Why restic cannot run here (backup tests and benches skip, saying so), or null when it is on PATH. */
export const RESTIC_MISSING: string | null = commandRuns("restic", ["version"])
  ? null
  : "restic is not on PATH";
