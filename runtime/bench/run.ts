/**
 * `npm run bench`: prints figures and ratios against baselines measured in the same run, on this machine.
 * Benchmarks are not tests: nothing here asserts a time. Pass section names to run only some:
 *   npm run bench -- builds reconciler local-box terminal-relay previews
 */

import { benchBackups } from "./backups.ts";
import { benchBuildQueue } from "./builds.ts";
import { benchPostgres } from "./harness.ts";
import { benchLocalBox } from "./local-box.ts";
import { benchPreviewProxy } from "./preview.ts";
import { benchReconciler } from "./reconciler.ts";
import { benchTerminalRelay } from "./terminal.ts";

const SECTIONS: Record<string, (pgs: Awaited<ReturnType<typeof benchPostgres>>) => Promise<void>> = {
  builds: benchBuildQueue,
  reconciler: benchReconciler,
  "local-box": benchLocalBox,
  "terminal-relay": benchTerminalRelay,
  previews: benchPreviewProxy,
  backups: benchBackups,
};

const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!(name in SECTIONS)) {
    console.error(`unknown bench section '${name}'; known: ${Object.keys(SECTIONS).join(", ")}`);
    process.exit(2);
  }
}
const pgs = await benchPostgres();
try {
  console.log(`berth bench — node ${process.version}, ${new Date().toISOString()}`);
  for (const [name, run] of Object.entries(SECTIONS)) {
    if (wanted.length === 0 || wanted.includes(name)) await run(pgs);
  }
} finally {
  await pgs.stop();
}
