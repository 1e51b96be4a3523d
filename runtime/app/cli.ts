/**
 * `berth`: the control plane's command line. Run through npm so the pinned Node 24 is used:
 *   npm run berth -- <command> [options]
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { formatStackDiff } from "../../stacks/pulumi/diff.ts";
import { Plans } from "../domain/billing/plans.ts";
import { usageReport } from "../domain/billing/usage.ts";
import {
  diffStack,
  forgetStack,
  listStacks,
  type OperatorDeps,
  repairStack,
} from "../domain/operators/stacks.ts";
import { type Config, ConfigError, ENV_DOCS, loadConfig } from "../platform/config.ts";
import { DomainError } from "../platform/errors.ts";
import { LogStoreSink } from "../platform/log-sink.ts";
import { createLogger, type Logger } from "../platform/logger.ts";
import { SecretBox } from "../platform/secret-box.ts";
import { SYSTEM } from "../store/actors.ts";
import { ClusterBusyError } from "../store/embedded.ts";
import { LOG_LEVELS, LOG_SOURCES, type LogQuery } from "../store/logs.ts";
import { runMigrations } from "../store/migrate.ts";
import { type AuthorizedStore, Store } from "../store/store.ts";
import { CLIENT_COMMANDS } from "./client/commands.ts";
import { CLIENT_HELP, runClient } from "./client/main.ts";
import { DOCTOR_ENV_DOCS, formatResults, runDoctor } from "./doctor.ts";
import { createDriver, PULUMI_ENV_DOCS } from "./drivers.ts";
import { openDatabase, startControlPlane } from "./server.ts";
import { ensureWebBuild } from "./web-build.ts";
import { isClusterWorker, isFirstWorker, superviseWorkers } from "./workers.ts";

const HELP = `berth — the Berth control plane

Usage: npm run berth -- <command> [--help]

Commands:
  serve     run the control plane (API, web UI, gateway); local mode by default
  migrate   apply pending database migrations and exit
  stacks    operators: list | diff <workspace> [start|stop] | repair <workspace> | forget <workspace>
  doctor    self-hosters: check every credential, DNS, the box image, the state backend and the clock
  billing   operators: usage <user> | plan <user> <plan|default> | plans
  logs      operators: search the central log store (every workspace's and the control plane's lines)

${CLIENT_HELP}

Configuration is read from the environment:
${Object.entries(ENV_DOCS)
  .map(([k, v]) => `  ${k.padEnd(40)}${v}`)
  .join("\n")}

With BERTH_DRIVER=pulumi, also:
${Object.entries(PULUMI_ENV_DOCS)
  .map(([k, v]) => `  ${k.padEnd(40)}${v}`)
  .join("\n")}
`;

const COMMAND_HELP: Record<string, string> = {
  serve: `Usage: npm start   (or: npm run berth -- serve)

Runs the control plane. With no configuration: local mode on http://127.0.0.1:7600, embedded Postgres under
./.berth, and a login link printed on start. Stop with Ctrl-C. See 'berth --help' for the environment.
BERTH_WORKERS=N runs N processes on one port (SO_REUSEPORT), each a full replica sharing DATABASE_URL.
`,
  migrate: `Usage: npm run berth -- migrate

Applies pending migrations to DATABASE_URL (or the embedded Postgres under BERTH_DATA_DIR) and exits.
Migrations also run at every 'serve'; replicas take turns through an advisory lock.
`,
  stacks: `Usage: npm run berth -- stacks <list | diff <workspace> [start|stop] | repair <workspace> | forget <workspace>>

  list     every live workspace record next to what the driver observes, with drift
  diff     what a start (wake) or stop (hibernate) build would change: resource, operation, changed keys
  repair   clear a stale lock and pending operations on the stack, then refresh it (refused during a build)
  forget   drop the record without touching the cloud; prints the cloud ids left behind
Uses the same DATABASE_URL/BERTH_DATA_DIR and BERTH_DRIVER as 'serve'.
`,
  doctor: `Usage: npm run berth -- doctor

Checks a self-hosted configuration before (or after) anything is created, with the environment 'serve'
would get: each credential with one harmless read call (Hetzner, Cloudflare/R2, the Pulumi state bucket,
Tailscale, Clerk, Stripe, Deepgram), the API and wildcard preview DNS records, the box snapshot, whether
/metrics has a token (BERTH_METRICS_TOKEN; a warning only), and the clock against the providers' clocks.
One line per check: ok, skip, warn or FAIL with what to fix. Exits 1 when any check fails. Prints no
credential.

On the control-plane host, with its own settings and credentials:
  sudo systemd-run --pipe --wait -p User=berth -p LoadCredential=berth:/etc/berth/credentials \\
    -p EnvironmentFile=/etc/berth/berth.env /usr/local/lib/berth/berth-start doctor

Also read (provider base URLs can be overridden, e.g. for a proxy):
${Object.entries(DOCTOR_ENV_DOCS)
  .map(([k, v]) => `  ${k.padEnd(34)}${v}`)
  .join("\n")}
`,
  billing: `Usage: npm run berth -- billing <usage <user> | plan <user> <plan|default> | plans>

  usage    a user's compute minutes this period (calendar month, UTC) against their plan, per workspace
  plan     put a user on a plan of BERTH_BILLING_PLANS ('default' returns them to BERTH_BILLING_DEFAULT_PLAN)
  plans    the configured plans
<user> is a user id, their external (Clerk) id, or their email. Uses the same DATABASE_URL/BERTH_DATA_DIR
and BERTH_BILLING_PLANS as 'serve'.
`,
  logs: `Usage: npm run berth -- logs [--workspace <id>] [--since <time>] [--until <time>] [--level <level>]
                             [--source agent|control-plane] [--q <text>] [--limit <n>] [--cursor <c>]

Prints stored log lines, oldest of the page first: box agents' lines and the control plane's warnings and
workspace lines, secrets already redacted. Times are ISO 8601 (2026-12-05T12:00:00Z); --level means that
level and above (trace debug info warn error fatal); --q a case-insensitive substring; --limit 1-500
(default 100) newest lines. When more are older, the cursor for the next page is printed on stderr. Uses
the same DATABASE_URL/BERTH_DATA_DIR as 'serve'.
`,
};

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: false,
    options: { help: { type: "boolean", short: "h" } },
  });
  const [command] = positionals;
  if (!command) {
    process.stdout.write(HELP);
    return values.help ? 0 : 2;
  }
  if ((CLIENT_COMMANDS as readonly string[]).includes(command)) return runClient(argv);
  if (!(command in COMMAND_HELP)) {
    process.stderr.write(`berth: unknown command '${command}'\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(COMMAND_HELP[command]!);
    return 0;
  }

  if (command === "doctor") {
    // Before loadConfig: a bad setting is one more thing to report, not a reason to check nothing.
    const results = await runDoctor(process.env);
    process.stdout.write(formatResults(results));
    return results.some((r) => r.status === "fail") ? 1 : 0;
  }

  const config = loadConfig();
  // The server keeps its warnings and workspace lines in the log store; one-shot commands print only.
  const logSink = command === "serve" ? new LogStoreSink() : undefined;
  const log = createLogger(config.logLevel, undefined, logSink ? { stream: logSink } : undefined);

  if (command === "migrate") {
    const { database, stopEmbedded } = await openDatabase(config, log, { joinRunning: true });
    try {
      await runMigrations(database);
      log.info("migrations applied");
    } finally {
      await database.close();
      await stopEmbedded?.();
    }
    return 0;
  }

  if (command === "stacks") return stacksCommand(config, log, positionals.slice(1));
  if (command === "billing") return billingCommand(config, log, positionals.slice(1));
  if (command === "logs") return logsCommand(config, log, argv.slice(argv.indexOf("logs") + 1));

  // Listen before starting: a SIGINT during startup would otherwise kill the process the default way and
  // orphan the embedded Postgres it already started. Such a signal stops the server once it is up.
  const stopRequested = new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  if (config.workers > 1 && !isClusterWorker()) {
    // Built once here, not raced by every worker.
    await ensureWebBuild(log);
    return superviseWorkers(config.workers, log);
  }
  await ensureWebBuild(log);
  const cp = await startControlPlane(config, { logger: log, ...(logSink ? { logSink } : {}) });
  // With BERTH_WORKERS, the first worker prints it for all (they share BERTH_LOCAL_TOKEN).
  if (cp.loginUrl && isFirstWorker()) {
    // Printed, not logged: log lines are shipped and kept, and this link is a credential.
    process.stderr.write(`\n  Berth is running (local mode). Sign in: ${cp.loginUrl}\n\n`);
  }
  await stopRequested;
  log.info("shutting down");
  await cp.close();
  return 0;
}

/**
 * Runs an operator command on the migrated database as the command line's own actor (`system:operator`, on
 * no one's behalf). A domain error is the operator's to fix: one line and exit 1, no stack trace.
 */
async function asOperator(
  config: Config,
  log: Logger,
  command: (scope: AuthorizedStore) => Promise<number>,
): Promise<number> {
  const { database, stopEmbedded } = await openDatabase(config, log, { joinRunning: true });
  try {
    await runMigrations(database);
    const secretBox = config.secretKeys
      ? SecretBox.fromSpec(config.secretKeys)
      : SecretBox.fromFile(join(config.dataDir, "secret-keys"));
    return await command(new Store(database, { secretBox }).as(SYSTEM.operator));
  } catch (err) {
    if (err instanceof DomainError) {
      process.stderr.write(`berth: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    await database.close();
    await stopEmbedded?.();
  }
}

async function logsCommand(config: Config, log: Logger, argv: string[]): Promise<number> {
  let query: LogQuery;
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        workspace: { type: "string" },
        since: { type: "string" },
        until: { type: "string" },
        level: { type: "string" },
        source: { type: "string" },
        q: { type: "string" },
        limit: { type: "string", default: "100" },
        cursor: { type: "string" },
      },
    });
    const time = (name: string, v: string | undefined) => {
      if (v === undefined) return undefined;
      const t = new Date(v);
      if (Number.isNaN(t.getTime())) throw new Error(`--${name}: not a time: ${v}`);
      return t;
    };
    const limit = Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new Error("--limit: must be 1-500");
    if (values.level !== undefined && !(LOG_LEVELS as readonly string[]).includes(values.level))
      throw new Error(`--level: one of ${LOG_LEVELS.join(", ")}`);
    if (values.source !== undefined && !(LOG_SOURCES as readonly string[]).includes(values.source))
      throw new Error(`--source: one of ${LOG_SOURCES.join(", ")}`);
    query = {
      limit,
      ...(values.workspace ? { workspaceId: values.workspace } : {}),
      ...(values.since ? { since: time("since", values.since)! } : {}),
      ...(values.until ? { until: time("until", values.until)! } : {}),
      ...(values.level ? { level: values.level as LogQuery["level"] & string } : {}),
      ...(values.source ? { source: values.source as LogQuery["source"] & string } : {}),
      ...(values.q ? { q: values.q } : {}),
      ...(values.cursor ? { cursor: values.cursor } : {}),
    };
  } catch (err) {
    process.stderr.write(`berth: ${(err as Error).message}\n\n${COMMAND_HELP.logs}`);
    return 2;
  }
  return asOperator(config, log, async (scope) => {
    const page = await scope.logs.search(query);
    for (const e of page.entries.toReversed()) {
      const fields = Object.keys(e.fields).length ? ` ${JSON.stringify(e.fields)}` : "";
      process.stdout.write(
        `${e.time.toISOString()} ${e.level.toUpperCase().padEnd(5)} ${e.source.padEnd(13)} ${e.workspaceId ?? "-"} ${e.message}${fields}\n`,
      );
    }
    if (page.nextCursor) process.stderr.write(`older lines: --cursor ${page.nextCursor}\n`);
    return 0;
  });
}

async function stacksCommand(config: Config, log: Logger, args: string[]): Promise<number> {
  const [sub, id, transition] = args;
  if (!sub || !["list", "diff", "repair", "forget"].includes(sub) || (sub !== "list" && !id)) {
    process.stderr.write(COMMAND_HELP.stacks!);
    return 2;
  }
  if (transition !== undefined && transition !== "start" && transition !== "stop") {
    process.stderr.write(`berth: the transition must be 'start' or 'stop', not '${transition}'\n`);
    return 2;
  }
  return asOperator(config, log, async (scope) => {
    const deps: OperatorDeps = {
      scope,
      driver: await createDriver(config, log),
      controlPlaneUrl: config.publicUrl ?? `http://${config.host}:${config.port}`,
    };
    const out = (line: string) => process.stdout.write(`${line}\n`);
    switch (sub) {
      case "list": {
        const rows = await listStacks(deps);
        out(["WORKSPACE".padEnd(38), "STATE".padEnd(12), "OBSERVED".padEnd(9), "DRIFT"].join(" "));
        for (const r of rows) {
          out(
            [r.workspaceId.padEnd(38), (r.state ?? "-").padEnd(12), r.observed.padEnd(9), r.drift ?? ""].join(
              " ",
            ),
          );
        }
        break;
      }
      case "diff":
        out(formatStackDiff(await diffStack(deps, id!, transition as "start" | "stop" | undefined)));
        break;
      case "repair":
        out(`repaired; workspace is now ${(await repairStack(deps, id!)).state}`);
        break;
      case "forget": {
        const { leaked } = await forgetStack(deps, id!);
        out(
          leaked.length
            ? `forgotten. These cloud resources still exist; delete them by hand:\n  ${leaked.join("\n  ")}`
            : "forgotten; nothing was left behind",
        );
        break;
      }
    }
    return 0;
  });
}

async function billingCommand(config: Config, log: Logger, args: string[]): Promise<number> {
  const [sub, ref, plan] = args;
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const plans = new Plans(config.billing);
  if (sub === "plans") {
    for (const p of Object.values(config.billing.plans)) {
      const isDefault = p.name === config.billing.defaultPlan ? " (default)" : "";
      out(
        `${p.name}${isDefault}: ${p.includedMinutes ?? "unlimited"} minutes, ${p.maxRunning ?? "any number of"} running, box sizes ${p.boxSizes?.join(",") ?? "any"}, overage ${p.overage}`,
      );
    }
    return 0;
  }
  if (!((sub === "usage" && ref) || (sub === "plan" && ref && plan))) {
    process.stderr.write(COMMAND_HELP.billing!);
    return 2;
  }
  if (sub === "plan" && plan !== "default" && !plans.has(plan!)) {
    process.stderr.write(`berth: no plan named '${plan}' (plans: ${plans.names.join(", ")})\n`);
    return 2;
  }
  return asOperator(config, log, async (scope) => {
    const userId = await scope.billing.resolveUser(ref!);
    if (sub === "plan") {
      await scope.billing.setPlan(userId, plan === "default" ? null : plan!);
      await scope.audit({ action: "billing.plan", targetType: "user", targetId: userId, details: { plan } });
    }
    const u = await usageReport(scope, plans, userId);
    out(`user      ${u.userId}`);
    out(
      `plan      ${u.plan.name} (overage: ${u.plan.overage})${u.subscriptionStatus ? `, subscription ${u.subscriptionStatus}` : ""}`,
    );
    out(`period    ${u.period.start.slice(0, 10)} to ${u.period.end.slice(0, 10)}`);
    out(
      `minutes   ${u.minutes} of ${u.includedMinutes ?? "unlimited"}; remaining ${u.remainingMinutes ?? "unlimited"}; projected ${u.projectedMinutes}`,
    );
    for (const w of u.workspaces) out(`  ${w.workspaceId}  ${String(w.minutes).padStart(7)}  ${w.name}`);
    return 0;
  });
}

/** Failures a user causes and can fix: one line saying what to do, no stack trace. */
function expectedFailure(err: unknown): string | null {
  if (err instanceof ConfigError) return `invalid configuration: ${err.message}`;
  if (err instanceof ClusterBusyError)
    return `${err.message}; stop it first, or point BERTH_DATA_DIR at another directory`;
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (e?.code === "EADDRINUSE")
    return `${e.address ?? "the address"}:${e.port ?? "?"} is already in use (another berth?); stop that process or set BERTH_PORT`;
  if (e?.code === "EADDRNOTAVAIL")
    return `cannot listen on ${e.address}: no such address here; check BERTH_HOST`;
  return null;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    const expected = expectedFailure(err);
    process.stderr.write(
      `berth: ${expected ?? (err instanceof Error ? (err.stack ?? err.message) : String(err))}\n`,
    );
    process.exit(err instanceof ConfigError ? 2 : 1);
  },
);
