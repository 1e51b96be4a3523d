/**
 * `berth`: the control plane's command line. Run through npm so the pinned Node 24 is used:
 *   npm run berth -- <command> [options]
 */
import { parseArgs } from "node:util";
import { ConfigError, ENV_DOCS, loadConfig } from "./config.ts";
import { runMigrations } from "./db/migrate.ts";
import { createLogger } from "./observability/logger.ts";
import { openDatabase, startControlPlane } from "./server.ts";

const HELP = `berth — the Berth control plane

Usage: npm run berth -- <command> [--help]

Commands:
  serve     run the control plane (API, web UI, gateway); local mode by default
  migrate   apply pending database migrations and exit

Configuration is read from the environment:
${Object.entries(ENV_DOCS)
  .map(([k, v]) => `  ${k.padEnd(26)}${v}`)
  .join("\n")}
`;

const COMMAND_HELP: Record<string, string> = {
  serve: `Usage: npm start   (or: npm run berth -- serve)

Runs the control plane. With no configuration: local mode on http://127.0.0.1:7600, embedded Postgres under
./.berth, and a login link printed on start. Stop with Ctrl-C. See 'berth --help' for the environment.
`,
  migrate: `Usage: npm run berth -- migrate

Applies pending migrations to DATABASE_URL (or the embedded Postgres under BERTH_DATA_DIR) and exits.
Migrations also run at every 'serve'; replicas take turns through an advisory lock.
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
  if (!(command in COMMAND_HELP)) {
    process.stderr.write(`berth: unknown command '${command}'\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(COMMAND_HELP[command]!);
    return 0;
  }

  const config = loadConfig();
  const log = createLogger(config.logLevel);

  if (command === "migrate") {
    const { database, stopEmbedded } = await openDatabase(config, log);
    try {
      await runMigrations(database);
      log.info("migrations applied");
    } finally {
      await database.close();
      await stopEmbedded?.();
    }
    return 0;
  }

  const cp = await startControlPlane(config, { logger: log });
  if (cp.loginUrl) {
    // Printed, not logged: log lines are shipped and kept, and this link is a credential.
    process.stderr.write(`\n  Berth is running (local mode). Sign in: ${cp.loginUrl}\n\n`);
  }
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  log.info("shutting down");
  await cp.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof ConfigError) process.stderr.write(`berth: invalid configuration: ${err.message}\n`);
    else process.stderr.write(`berth: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(err instanceof ConfigError ? 2 : 1);
  },
);
