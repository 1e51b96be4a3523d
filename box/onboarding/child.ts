/** Runs one onboarding job as the box user (runner.ts): the job as JSON on stdin, the error on stderr. */
import { text } from "node:stream/consumers";
import { onboardAction } from "../protocol.ts";
import { applyOnboarding } from "./apply.ts";
import type { OnboardingJob } from "./runner.ts";

try {
  const job = JSON.parse(await text(process.stdin)) as OnboardingJob;
  await applyOnboarding(onboardAction.parse(job.action), job.paths, { allowLocal: job.allowLocal === true });
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = 1;
}
