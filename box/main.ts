/**
 * The box agent's entry point: `node box/main.ts`. See `--help`, box/agent.ts for what it does and in
 * which order, and box/boot-config.ts for the settings (environment) and secrets ($CREDENTIALS_DIRECTORY).
 */
import { execFile } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { AGENT_VERSION, Agent, type AgentOptions, type TerminalHandle } from "./agent.ts";
import { BoxBackups } from "./backups/box-backups.ts";
import { DEFAULT_RETRY, Restic } from "./backups/restic.ts";
import { type BootConfig, BootConfigError, loadBootConfig } from "./boot-config.ts";
import { SessionPlan } from "./home/session-plan.ts";
import { currentOwner, resolveUser } from "./layout/box-user.ts";
import { type LayoutPaths, layoutPaths } from "./layout/workspace-layout.ts";
import { onboardingRunner } from "./onboarding/runner.ts";
import type { AgentEventDraft, LogPayload } from "./protocol.ts";
import { LogShipper } from "./telemetry/log-shipper.ts";
import { createAgentLogger, type Logger } from "./telemetry/logger.ts";
import { startTerminalEndpoint } from "./terminal/endpoint.ts";
import { paneEnvironment } from "./tmux/pane-environment.ts";
import { TmuxSessions } from "./tmux/sessions.ts";
import type { TmuxSocket } from "./tmux/tmux-command.ts";

const run = promisify(execFile);

export const HELP = `berth-agent ${AGENT_VERSION}: the Berth box agent

Usage: node box/main.ts [--help | --version]

Brings a workspace up (VM: mount the volume; then the layout, Claude Code hooks, the loopback endpoint,
the terminal endpoint, session capture and preview detection), reports to the control plane and applies
its desired state. SIGTERM/SIGINT: report shutting_down, flush events, report off, exit 0.

Mode: VM when BERTH_VOLUME_DEVICE is set (run as root under systemd), local otherwise (a child process of
the control plane; the workspace root is a plain directory that must exist).

Settings (environment):
  BERTH_WORKSPACE_ID        required, ^[a-z0-9-]{1,64}$
  BERTH_CONTROL_PLANE_URL   required, e.g. http://127.0.0.1:3000 (the agent calls <url>/agent/v1/...)
  BERTH_WORKSPACE_ROOT      default /mnt/workspace
  BERTH_VOLUME_DEVICE       VM only: /dev/disk/by-id/scsi-0HC_Volume_<id>
  BERTH_BOX_USER            default claude (VM: owner of user/ and the /home/<user> link)
  BERTH_TTYD_HOST, BERTH_TTYD_PORT   terminal endpoint bind address, default 0.0.0.0:7681
  BERTH_AGENT_PORT          loopback endpoint (hooks, /healthz), default 7690
  BERTH_HOSTNAME, BERTH_TAILSCALE_TAGS   VM: tailscale up
  BERTH_TMUX_SOCKET         tmux socket path (VM: /run/berth-tmux/tmux.sock); local default: -L berth-<id>
  BERTH_AGENT_LOG_LEVEL     default info
  BERTH_TERMINAL            local: auto (ttyd if on PATH, else built-in) | builtin | /path/to/ttyd
  BERTH_PREVIEW_UID         local: also report listeners of this uid (default: only the tmux server's tree)
  BERTH_RESTIC_REPOSITORY   backups: a local path or s3:https://host/bucket[/prefix] (unset: no backups)
  BERTH_BACKUP_RETRY_ATTEMPTS  tries of one restic operation on network/403 errors (default 7, backoff 2-30 s)
  BERTH_RESTIC              the restic binary (default restic on PATH)
  BERTH_TRACEPARENT         W3C traceparent of the build that started this box: the first heartbeat joins its trace

Secrets (one file each in $CREDENTIALS_DIRECTORY, never in the environment or argv):
  agent-token, ttyd-credential (user:password), restic-password; optional r2-access-key-id,
  r2-secret-access-key, tailscale-auth-key. In local mode the agent deletes the directory once it has read
  it (the panes run as the agent's own user). The panes inherit neither it nor any BERTH_* setting.

Exit status: 0 after a clean shutdown; 2 when the boot config is unusable (the agent cannot call home).
A failed start does not exit: the agent stays up in start_error/start_timeout and reports the error.
`;

function previewUid(): { uid?: number } {
  const raw = process.env.BERTH_PREVIEW_UID;
  if (raw === undefined || raw === "") return {};
  const uid = Number(raw);
  if (!Number.isInteger(uid) || uid < 0)
    throw new BootConfigError(`BERTH_PREVIEW_UID must be a uid, got ${raw}`);
  return { uid };
}

function tmuxSocket(config: BootConfig): TmuxSocket {
  const path = process.env.BERTH_TMUX_SOCKET;
  return path ? { path } : { name: `berth-${config.settings.BERTH_WORKSPACE_ID}` };
}

/** Local mode: the ttyd-protocol endpoint, built in unless a ttyd binary is chosen. */
function localTerminal(
  config: BootConfig,
  socket: TmuxSocket,
  tmuxEnv: NodeJS.ProcessEnv,
  ensure: (session: string) => Promise<unknown>,
  log: Logger,
) {
  return async (paths: LayoutPaths): Promise<TerminalHandle> => {
    const s = config.settings;
    const endpoint = await startTerminalEndpoint({
      host: s.BERTH_TTYD_HOST,
      port: s.BERTH_TTYD_PORT,
      credential: config.credentials["ttyd-credential"],
      tmux: { socket, env: tmuxEnv },
      cwd: paths.projects,
      onAttach: ensure,
      ensureSessionUrl: `http://127.0.0.1:${s.BERTH_AGENT_PORT}/sessions`,
      logger: log,
      ttyd: process.env.BERTH_TERMINAL ?? "auto",
    });
    return endpoint;
  };
}

/** VM: ttyd and tmux are systemd units (packer/files/systemd); the agent starts and stops them. */
function vmTerminal(config: BootConfig) {
  return async (): Promise<TerminalHandle> => {
    await run("systemctl", ["start", "berth-ttyd.service"]);
    return {
      kind: "ttyd",
      port: config.settings.BERTH_TTYD_PORT,
      close: async () => {
        await run("systemctl", ["stop", "berth-ttyd.service"]);
      },
    };
  };
}

/** VM: join the tailnet when a key was provisioned; the key stays in its file (`file:` form). */
function joinTailnet(config: BootConfig) {
  return async (): Promise<string | null> => {
    const dir = process.env.CREDENTIALS_DIRECTORY;
    if (!config.credentials["tailscale-auth-key"] || !dir) return null;
    const s = config.settings;
    const args = [
      "up",
      `--auth-key=file:${join(dir, "tailscale-auth-key")}`,
      `--advertise-tags=${s.BERTH_TAILSCALE_TAGS}`,
    ];
    if (s.BERTH_HOSTNAME) args.push(`--hostname=${s.BERTH_HOSTNAME}`);
    await run("tailscale", args, { timeout: 120_000 });
    const { stdout } = await run("tailscale", ["ip", "-4"]);
    return stdout.trim().split("\n")[0] || null;
  };
}

/**
 * Onboarding writes the project's files as the box user. Claude Code keeps trust in `~/.claude.json`, or in
 * `$CLAUDE_CONFIG_DIR/.claude.json` when that is set (local mode sets it to user/.claude).
 */
function onboarding(config: BootConfig, mode: "vm" | "local", boxUser: AgentOptions["boxUser"]) {
  const s = config.settings;
  const layout = layoutPaths(s.BERTH_WORKSPACE_ROOT);
  const home = mode === "vm" ? join("/home", s.BERTH_BOX_USER) : process.env.HOME;
  return onboardingRunner({
    paths: {
      projects: layout.projects,
      claudeDir: layout.claude,
      trustFile: mode === "vm" ? join(layout.home, ".claude.json") : join(layout.claude, ".claude.json"),
      projectAliases: home ? [join(home, "projects")] : [],
    },
    runAs: mode === "vm" && boxUser ? { ...boxUser, home: join("/home", s.BERTH_BOX_USER) } : null,
    allowLocal: mode === "local",
  });
}

/**
 * Backups when a repository is configured. On a VM the password stays in its credentials file (restic reads
 * RESTIC_PASSWORD_FILE); a local agent has deleted its credentials directory (see main), so restic gets the
 * value in its environment, which only this OS user can read. The S3 keys go to restic's environment only.
 */
function boxBackups(
  config: BootConfig,
  sessions: TmuxSessions,
  log: Logger,
  emit: (draft: AgentEventDraft) => void,
): BoxBackups | null {
  const s = config.settings;
  const dir = process.env.CREDENTIALS_DIRECTORY;
  if (!s.BERTH_RESTIC_REPOSITORY || !dir) return null;
  const id = config.credentials["r2-access-key-id"];
  const secret = config.credentials["r2-secret-access-key"];
  const retryAttempts = Number(process.env.BERTH_BACKUP_RETRY_ATTEMPTS) || 0;
  const restic = new Restic(
    {
      url: s.BERTH_RESTIC_REPOSITORY,
      password: s.BERTH_VOLUME_DEVICE
        ? { file: join(dir, "restic-password") }
        : { value: config.credentials["restic-password"] },
      ...(id && secret ? { s3: { accessKeyId: id, secretAccessKey: secret } } : {}),
    },
    {
      cacheDir: join(s.BERTH_WORKSPACE_ROOT, "system", "backups", "cache"),
      log,
      ...(retryAttempts ? { retry: { ...DEFAULT_RETRY, attempts: retryAttempts } } : {}),
    },
  );
  return new BoxBackups({
    restic,
    root: s.BERTH_WORKSPACE_ROOT,
    host: s.BERTH_WORKSPACE_ID,
    sessions,
    emit,
    log,
  });
}

export async function main(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(HELP);
    return 0;
  }
  if (argv.includes("--version")) {
    process.stdout.write(`${AGENT_VERSION}\n`);
    return 0;
  }
  if (argv.length > 0) {
    process.stderr.write(`berth-agent: unknown argument ${JSON.stringify(argv[0])}; see --help\n`);
    return 2;
  }

  let config: BootConfig;
  let extraPreviewOwner: { uid?: number };
  try {
    config = loadBootConfig(process.env, process.env.CREDENTIALS_DIRECTORY);
    extraPreviewOwner = previewUid();
  } catch (err) {
    const msg =
      err instanceof BootConfigError ? err.message : `cannot load boot config: ${(err as Error).message}`;
    process.stderr.write(`berth-agent: ${msg}\n`);
    return 2;
  }
  const s = config.settings;
  const mode = s.BERTH_VOLUME_DEVICE ? "vm" : "local";
  // On a VM the secrets are systemd's copies, readable by root alone, and the panes run as the box user.
  // Locally the panes run as this process's own user, so a file would be readable by every tool Claude
  // runs: the driver writes them for each start, and the agent keeps them in memory only.
  if (mode === "local") rmSync(process.env.CREDENTIALS_DIRECTORY!, { recursive: true, force: true });

  let agent: Agent | null = null;
  const shipper = new LogShipper({ publish: (log: LogPayload, at: string) => agent?.shipLog(log, at) });
  const log = createAgentLogger({
    level: process.env.BERTH_AGENT_LOG_LEVEL ?? "info",
    workspaceId: s.BERTH_WORKSPACE_ID,
    extraStream: shipper,
  });

  const socket = tmuxSocket(config);
  // Locally the panes may keep a HOME outside the workspace, so point Claude Code at the workspace's config
  // dir, where the hooks are installed. On a VM, ~/.claude already leads there (layout links). tmux itself
  // gets a UTF-8 locale from tmuxEnv() (box/tmux/tmux-command.ts).
  const tmuxEnvironment = paneEnvironment(
    mode === "local"
      ? { ...process.env, CLAUDE_CONFIG_DIR: join(s.BERTH_WORKSPACE_ROOT, "user", ".claude") }
      : process.env,
  );
  const paths = {
    projects: join(s.BERTH_WORKSPACE_ROOT, "user", "projects"),
    logs: join(s.BERTH_WORKSPACE_ROOT, "system", "logs"),
  };
  // The user's secrets and guided starts, in memory only: filled from heartbeats, read at session creation.
  const plan = new SessionPlan();
  const sessions = new TmuxSessions({
    socket,
    cwd: paths.projects,
    logsDir: paths.logs,
    env: tmuxEnvironment,
    environment: () => plan.environment(),
    guided: (name) => plan.guided(name),
    npmPrefix: join(s.BERTH_WORKSPACE_ROOT, "user", "home", ".local"),
  });
  let boxUser: AgentOptions["boxUser"] = null;
  let boxUserError: string | undefined;
  if (mode === "vm") {
    try {
      boxUser = resolveUser(s.BERTH_BOX_USER);
    } catch (err) {
      boxUserError = (err as Error).message;
    }
  }

  const options: AgentOptions = {
    config,
    mode,
    log,
    boxUser,
    agentOwner: mode === "vm" ? currentOwner() : null,
    sessions,
    startTerminal:
      mode === "vm"
        ? vmTerminal(config)
        : localTerminal(config, socket, tmuxEnvironment, (name) => agent!.ensureForAttach(name), log),
    previewOwner:
      mode === "vm" && boxUser
        ? { uid: boxUser.uid }
        : {
            // Locally the agent shares its uid with everything else on the machine: count only what runs
            // inside this workspace's tmux server (plus, if configured, one dedicated uid).
            ...extraPreviewOwner,
            ancestors: async () => {
              try {
                const pid = Number((await sessions.tmux.run(["display-message", "-p", "#{pid}"])).trim());
                return Number.isInteger(pid) && pid > 0 ? [pid] : [];
              } catch {
                return [];
              }
            },
          },
  };
  options.plan = plan;
  options.onboard = onboarding(config, mode, boxUser);
  if (mode === "vm") options.joinTailnet = joinTailnet(config);
  const backups = boxBackups(config, sessions, log, (draft) => agent?.report(draft));
  if (backups) {
    options.backup = (action) => backups.runBackup(action);
    options.restore = (action) => backups.runRestore(action);
  }
  if (boxUserError) options.boxUserError = boxUserError;
  agent = new Agent(options);

  let stopping: Promise<void> | null = null;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, "second signal: exiting without waiting for the flush");
      process.exit(130);
    }
    log.info({ signal }, "shutting down");
    stopping = agent!.shutdown().then(({ drained }) => {
      if (!drained)
        log.warn("some events could not be delivered; they stay in the outbox for the next start");
    });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("unhandledRejection", (err) =>
    log.error({ err: (err as Error)?.message ?? String(err) }, "unhandled rejection"),
  );

  log.info({ mode, version: AGENT_VERSION, root: s.BERTH_WORKSPACE_ROOT }, "berth agent starting");
  await agent.start();
  await new Promise<void>((resolve) => {
    const wait = setInterval(() => {
      if (stopping) {
        clearInterval(wait);
        stopping.then(resolve, resolve);
      }
    }, 100);
  });
  log.info("agent off");
  return 0;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      process.stderr.write(`berth-agent: fatal: ${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
}
