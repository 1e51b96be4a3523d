/**
 * `npm run bench`: prints figures and ratios against baselines measured in the same run, on this machine.
 * Benchmarks are not tests: nothing here asserts a time. Pass section names to run only some:
 *   npm run bench -- builds reconciler local-box terminal-relay previews preview-page session-environment
 *   autostop billing client-attach voice backups telemetry tracing
 */

import { benchAutostop } from "./autostop.ts";
import { benchBackups } from "./backups.ts";
import { benchBilling } from "./billing.ts";
import { benchBuildQueue } from "./builds.ts";
import { benchClientAttach } from "./client-attach.ts";
import { benchPostgres } from "./harness.ts";
import { benchLocalBox } from "./local-box.ts";
import { benchPreviewProxy } from "./preview.ts";
import { benchPreviewPage } from "./preview-page.ts";
import { benchReconciler } from "./reconciler.ts";
import { benchSessionEnvironment } from "./session-environment.ts";
import { benchTelemetry } from "./telemetry.ts";
import { benchTerminalRelay } from "./terminal.ts";
import { benchTracing } from "./tracing.ts";
import { benchVoice } from "./voice.ts";

const SECTIONS: Record<string, (pgs: Awaited<ReturnType<typeof benchPostgres>>) => Promise<void>> = {
  builds: benchBuildQueue,
  reconciler: benchReconciler,
  "local-box": benchLocalBox,
  "terminal-relay": benchTerminalRelay,
  previews: benchPreviewProxy,
  "preview-page": benchPreviewPage,
  "session-environment": benchSessionEnvironment,
  autostop: benchAutostop,
  billing: benchBilling,
  "client-attach": benchClientAttach,
  voice: benchVoice,
  backups: benchBackups,
  telemetry: benchTelemetry,
  tracing: benchTracing,
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
