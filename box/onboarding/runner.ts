/**
 * The agent's onboarding runner. Locally the agent already runs as the workspace's user, so it applies the
 * files itself. On a VM the agent is root and the project folder is the box user's: following a link the
 * user planted there as root would write anywhere, so it runs `child.ts` as the box user instead, with the
 * action on stdin (never argv) and the error, if any, on stderr.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { OnboardRunner } from "../home/desired-state.ts";
import type { Owner } from "../layout/workspace-layout.ts";
import type { OnboardAction } from "../protocol.ts";
import { applyOnboarding, type OnboardingPaths } from "./apply.ts";

export interface OnboardingJob {
  action: OnboardAction;
  paths: OnboardingPaths;
  allowLocal: boolean;
}

const CHILD = fileURLToPath(new URL("./child.ts", import.meta.url));

export function onboardingRunner(options: {
  paths: OnboardingPaths;
  /** VM: the box user the work runs as. Null: this process's own user (local mode). */
  runAs: (Owner & { home: string }) | null;
  allowLocal: boolean;
}): OnboardRunner {
  return async (action) => {
    const job: OnboardingJob = { action, paths: options.paths, allowLocal: options.allowLocal };
    if (!options.runAs) {
      await applyOnboarding(action, job.paths, { allowLocal: job.allowLocal });
      return;
    }
    const { uid, gid, home } = options.runAs;
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [CHILD], {
        uid,
        gid,
        cwd: options.paths.projects,
        // The box user's own environment, not the agent's (which names its credentials).
        env: { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", HOME: home, LANG: "C.UTF-8" },
        stdio: ["pipe", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => {
        if (stderr.length < 8192) stderr += d.toString("utf8");
      });
      child.on("error", reject);
      child.on("close", (code) =>
        code === 0
          ? resolve()
          : reject(new Error(stderr.trim().slice(0, 2000) || `onboarding exited ${code}`)),
      );
      child.stdin.end(JSON.stringify(job));
    });
  };
}
