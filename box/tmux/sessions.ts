import { constants } from "node:fs";
import { access, mkdir, realpath, stat } from "node:fs/promises";
import { delimiter, isAbsolute, join } from "node:path";
import { type EnvironmentEntry, environmentScript, previousEnvironmentNames } from "./environment.ts";
import { assertSessionName, exactSessionTarget } from "./names.ts";
import {
  DEFAULT_LOG_ROTATION,
  type LogRotation,
  rotatingLogPipeCommand,
  sessionLogPath,
} from "./session-log.ts";
import {
  isNoServerError,
  TmuxClient,
  TmuxCommandError,
  type TmuxServerOptions,
  tmuxEnv,
} from "./tmux-command.ts";
import { installPaneViews, RELAYOUT_ON_RESIZE } from "./views.ts";

export type PaneRole = "claude" | "logs" | "shell";
export const PANE_ROLES: readonly PaneRole[] = ["claude", "logs", "shell"];

/** A user option on each pane: indexes shift with `base-index` and user splits, the tag does not. */
const ROLE_OPTION = "@berth-role";

/** tmux passes a client command in one message of at most 16 KiB, so long text is sent in pieces. */
const SEND_KEYS_CHUNK_CHARS = 1024;
export const MAX_SEND_KEYS_CHARS = 64 * 1024;

export interface TmuxSessionsOptions extends TmuxServerOptions {
  /** Working directory of every pane: the workspace's `user/projects`. Must exist. */
  cwd: string;
  /** The workspace's `system/logs`; capture goes to `<logsDir>/sessions/<name>.log`. */
  logsDir: string;
  /** Interactive shell for the panes; default `$SHELL` when absolute, else `/bin/bash`, else `/bin/sh`. */
  shell?: string;
  /** Its arguments; default `["-i"]` (interactive, not login: see the PATH note in `#create`). */
  shellArgs?: string[];
  /** What the Claude pane types into its shell; looked up on the panes' PATH. Default `claude`. */
  claudeCommand?: string;
  rotation?: LogRotation;
  /**
   * The user's secrets for the panes of sessions created from now on, read at each creation (so a change
   * reaches the next session). Handed to the tmux server over stdin, never argv (environment.ts).
   */
  environment?: () => readonly EnvironmentEntry[] | null;
  /** How a session starts when it is guided: Claude Code in `project` under `cwd`, `task` as its prompt. */
  guided?: (name: string) => { project: string | null; task: string } | undefined;
  /** Where `npm install --global` from a pane installs (inside the workspace); unset: npm's default. */
  npmPrefix?: string;
  /** Size of a detached session until a client attaches (tmux's detached default is 80x24). */
  width?: number;
  height?: number;
}

export interface SessionInfo {
  name: string;
  windows: number;
  attachedClients: number;
  createdAt: Date;
}

export interface EnsureResult {
  created: boolean;
  logFile: string;
}

export class SessionNotFoundError extends Error {
  override name = "SessionNotFoundError";
}

/** A pane whose foreground program is one of these sits at a prompt, so typing `claude` there is safe. */
const IDLE_SHELL = /^(ba|da|z|k|fi)?sh$/;

const CLAUDE_MISSING =
  "Claude Code is not installed here (no claude on PATH), so this pane is a shell. Install it with " +
  "`npm install -g @anthropic-ai/claude-code` (or see https://docs.claude.com/en/docs/claude-code/setup), " +
  "then run `claude` here; new sessions start it by themselves.";

function redactValues(text: string, env: readonly EnvironmentEntry[]): string {
  let out = text;
  for (const { value } of env) if (value.length >= 4) out = out.replaceAll(value, "[redacted]");
  return out;
}

const CLAUDE_COMMAND = /^[A-Za-z0-9_./-]+( [A-Za-z0-9_./=-]+)*$/;

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

async function findOnPath(command: string, pathVar: string | undefined): Promise<string | null> {
  if (command.includes("/")) return (await isExecutable(command)) ? command : null;
  for (const dir of (pathVar ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, command);
    if (await isExecutable(candidate)) return candidate;
  }
  return null;
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * The tmux sessions of one workspace, on a dedicated tmux server. Every method validates the session name
 * before tmux sees it and targets sessions with `=name` (exact match).
 */
export class TmuxSessions {
  readonly tmux: TmuxClient;
  readonly #opts: TmuxSessionsOptions;
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(opts: TmuxSessionsOptions) {
    if (!isAbsolute(opts.cwd)) throw new Error(`tmux sessions cwd must be an absolute path, got ${opts.cwd}`);
    if (!isAbsolute(opts.logsDir))
      throw new Error(`tmux sessions logsDir must be an absolute path, got ${opts.logsDir}`);
    const claude = opts.claudeCommand ?? "claude";
    if (!CLAUDE_COMMAND.test(claude))
      throw new Error("claudeCommand must be words of [A-Za-z0-9_./=-] separated by single spaces");
    this.#opts = opts;
    this.tmux = new TmuxClient(opts);
  }

  logFile(name: string): string {
    return sessionLogPath(this.#opts.logsDir, name);
  }

  async has(name: string): Promise<boolean> {
    return this.tmux.succeeds(["has-session", "-t", exactSessionTarget(name)]);
  }

  /**
   * Makes sure the session exists with its three panes and its capture running. Safe to call any number
   * of times: an existing session is left as it is, except that a bare one gets the layout (see
   * `#layOutIfBare`) and a stopped capture is restarted. This is the one "ensure the session" of the
   * box: the agent's desired state, the built-in terminal endpoint and ttyd's attach command (through the
   * agent's loopback endpoint) all come here before a client attaches.
   * Calls for the same name are serialized in this process; another process racing on the same server
   * loses with "duplicate session", which counts as "exists".
   */
  async ensure(name: string): Promise<EnsureResult> {
    assertSessionName(name);
    return this.#serialized(name, async () => {
      let created = false;
      if (!(await this.has(name))) created = await this.#create(name);
      else await this.#layOutIfBare(name);
      // Server-wide and versioned (one tmux call once installed): the phone's one-pane views (views.ts).
      // A tmux without them still serves the layout: the web client only uses views tmux announced.
      await installPaneViews(this.tmux).catch(() => {});
      const logFile = await this.ensureCapture(name);
      return { created, logFile };
    });
  }

  /** What every pane of a session is started with, and where Claude Code is (null: not on the panes' PATH). */
  async #paneSetup(name: string): Promise<{
    cwd: string;
    paneEnv: string[];
    shellCommand: string[];
    claudePath: string | null;
    /** What pane 1 types to start Claude: its command, with the task for a guided session. */
    claudeLine: string;
  }> {
    const dir = await stat(this.#opts.cwd).catch(() => null);
    if (!dir?.isDirectory()) throw new Error(`session working directory ${this.#opts.cwd} does not exist`);
    const guided = this.#opts.guided?.(name);
    const cwd = await this.#projectCwd(await this.#paneCwd(), guided?.project ?? null);
    const shellCommand = [await this.#shell(), ...(this.#opts.shellArgs ?? ["-i"])];
    // Panes get this PATH explicitly: a tmux server started earlier (by another manager or a terminal
    // attach) would otherwise give them its own, and the lookup below would not match what the pane sees.
    // For the same reason the shells are interactive but not login shells: Debian's /etc/profile resets
    // PATH, so the agent's PATH (which must include the box user's ~/.local/bin) is the one that counts.
    const path = tmuxEnv(this.#opts.env).PATH ?? "/usr/local/bin:/usr/bin:/bin";
    // Claude Code's auto-updater ignores the image's pin and `npm install -g`s over the host (issue 17):
    // off in every pane, and any global install from a pane lands in the workspace (npmPrefix).
    const npm = this.#opts.npmPrefix ? ["-e", `NPM_CONFIG_PREFIX=${this.#opts.npmPrefix}`] : [];
    const paneEnv = ["-e", `PATH=${path}`, "-e", "DISABLE_AUTOUPDATER=1", ...npm];
    const claudePath = await findOnPath((this.#opts.claudeCommand ?? "claude").split(" ")[0]!, path);
    const claude = this.#opts.claudeCommand ?? "claude";
    const claudeLine = guided ? `${claude} ${shellQuote(guided.task)}` : claude;
    return { cwd, paneEnv, shellCommand, claudePath, claudeLine };
  }

  async #create(name: string): Promise<boolean> {
    const { cwd, paneEnv, shellCommand, claudePath, claudeLine } = await this.#paneSetup(name);
    // Claude runs as a child of an interactive shell (typed in below), so when it exits or crashes the
    // pane keeps a shell; with no Claude, the pane prints one line and becomes that shell.
    const firstPane = claudePath
      ? shellCommand
      : [
          "/bin/sh",
          "-c",
          `printf '%s\\n' ${shellQuote(CLAUDE_MISSING)}; exec "$@"`,
          "berth-hint",
          ...shellCommand,
        ];
    const size = [String(this.#opts.width ?? 200), String(this.#opts.height ?? 50)];
    // The secrets go to the server's global environment in the same client call, before the panes exist.
    const env = this.#opts.environment?.() ?? [];
    const previous = this.#opts.environment ? await previousEnvironmentNames(this.tmux) : [];
    const script = env.length || previous.length ? environmentScript(env, previous) : null;
    const newSession = (args: string[]) =>
      script ? this.tmux.run(["source-file", "-", ";", ...args], { input: script }) : this.tmux.run(args);
    let claudePane: string;
    try {
      claudePane = (
        await newSession([
          "new-session",
          "-d",
          "-s",
          name,
          "-n",
          "main",
          "-x",
          size[0]!,
          "-y",
          size[1]!,
          "-c",
          cwd,
          ...paneEnv,
          "-P",
          "-F",
          "#{pane_id}",
          "--",
          ...firstPane,
        ])
      ).trim();
    } catch (err) {
      if (err instanceof TmuxCommandError && /duplicate session/.test(err.stderr)) return false;
      if (script && err instanceof TmuxCommandError)
        throw new TmuxCommandError(
          redactValues(err.message, env),
          err.exitCode,
          redactValues(err.stderr, env),
        );
      throw err;
    }
    await this.#layOut(claudePane, cwd, paneEnv, shellCommand);
    if (claudePath) await this.#typeLine(claudePane, claudeLine);
    return true;
  }

  /**
   * Around the Claude pane `claudePane`, the only pane of its window: the logs and shell panes, the role
   * tags, and the window's layout options.
   */
  async #layOut(claudePane: string, cwd: string, paneEnv: string[], shellCommand: string[]): Promise<void> {
    const split = async (direction: "-h" | "-v", from: string) =>
      (
        await this.tmux.run([
          "split-window",
          direction,
          "-d",
          "-t",
          from,
          "-c",
          cwd,
          ...paneEnv,
          "-P",
          "-F",
          "#{pane_id}",
          "--",
          ...shellCommand,
        ])
      ).trim();
    const logsPane = await split("-h", claudePane);
    const shellPane = await split("-v", logsPane);
    const panes: Record<PaneRole, string> = { claude: claudePane, logs: logsPane, shell: shellPane };
    for (const role of PANE_ROLES)
      await this.tmux.run(["set-option", "-p", "-t", panes[role], ROLE_OPTION, role]);
    // The Claude pane keeps 60% of the width whatever the client's size: with tmux's default (80 columns)
    // a phone-sized client squeezed it to a single column. The hook re-applies the layout on every resize.
    await this.tmux.run(["set-window-option", "-t", claudePane, "main-pane-width", "60%"]);
    await this.tmux.run(["set-hook", "-t", claudePane, "window-resized", RELAYOUT_ON_RESIZE]);
    // A quiet status line (tmux's default is black on bright green), readable: grey 250 on 236 is 8:1.
    await this.tmux.run(["set-option", "-t", claudePane, "status-style", "bg=colour236,fg=colour250"]);
    await this.tmux.run(["set-option", "-t", claudePane, "window-status-current-style", "fg=colour255,bold"]);
    await this.tmux.run(["select-layout", "-t", claudePane, "main-vertical"]);
    await this.tmux.run(["select-pane", "-t", claudePane]);
  }

  /**
   * A session that exists without Berth's layout: created by a bare `new-session -A` (an attach while the
   * agent was unreachable) or by hand, with one pane and no role tags. It gets the layout around its pane,
   * and Claude is started there only when the pane sits at an idle shell (never typed into a program).
   * A session with any role tag, or with more panes (the user's own arrangement), is left alone.
   */
  async #layOutIfBare(name: string): Promise<void> {
    const out = await this.tmux
      .run([
        "list-panes",
        "-s",
        "-t",
        `${exactSessionTarget(name)}:`,
        "-F",
        `#{pane_id}\t#{${ROLE_OPTION}}\t#{pane_current_command}`,
      ])
      .catch(() => "");
    const panes = out
      .split("\n")
      .filter(Boolean)
      .map((line) => line.split("\t"));
    if (panes.length !== 1 || panes[0]![1]) return;
    const [pane, , command] = panes[0]!;
    const { cwd, paneEnv, shellCommand, claudePath, claudeLine } = await this.#paneSetup(name);
    await this.#layOut(pane!, cwd, paneEnv, shellCommand);
    // By its full path: this pane's shell has the PATH of whoever created it, not the panes' PATH.
    const [, ...args] = claudeLine.split(" ");
    if (claudePath && IDLE_SHELL.test(command ?? ""))
      await this.#typeLine(pane!, [claudePath, ...args].join(" "));
  }

  /** A guided session's project folder when it is a directory inside `base`, else `base` itself. */
  async #projectCwd(base: string, project: string | null): Promise<string> {
    if (!project || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(project)) return base;
    const dir = join(base, project);
    const [real, root] = await Promise.all([
      realpath(dir).catch(() => null),
      realpath(base).catch(() => null),
    ]);
    if (!real || !root || !real.startsWith(`${root}/`)) return base;
    return (await stat(real).catch(() => null))?.isDirectory() ? dir : base;
  }

  /**
   * Where the panes start: the projects directory, reached as `$HOME/projects` when the layout's link
   * makes that the same directory (box/layout), so shells see `~/projects` in `$PWD` and their prompt
   * instead of the volume's full path. HOME is the tmux server's (the box user's on a VM, where the agent
   * runs as root), else this process's environment (the agent's, which local mode points at user/home).
   */
  async #paneCwd(): Promise<string> {
    const { cwd } = this.#opts;
    const server = await this.tmux.run(["show-environment", "-g", "HOME"]).catch(() => "");
    const home = /^HOME=(.+)$/m.exec(server)?.[1] ?? tmuxEnv(this.#opts.env).HOME;
    if (!home || !isAbsolute(home)) return cwd;
    const viaHome = join(home, "projects");
    const [a, b] = await Promise.all([realpath(viaHome).catch(() => null), realpath(cwd).catch(() => null)]);
    return a !== null && a === b ? viaHome : cwd;
  }

  async #shell(): Promise<string> {
    const candidates = [this.#opts.shell, process.env.SHELL, "/bin/bash", "/bin/sh"];
    for (const c of candidates) if (c && isAbsolute(c) && (await isExecutable(c))) return c;
    throw new Error("no usable shell for tmux panes (tried the shell option, $SHELL, /bin/bash, /bin/sh)");
  }

  /** Pane ids by role. A session that Berth did not lay out has no tags: its first pane stands in for Claude. */
  async panes(name: string): Promise<Partial<Record<PaneRole, string>>> {
    let out: string;
    try {
      // The colon makes it session:window. A bare `=main` is a window target too, and tmux tries it as a
      // window name first: every session's window is named "main", so it found the current session's.
      out = await this.tmux.run([
        "list-panes",
        "-s",
        "-t",
        `${exactSessionTarget(name)}:`,
        "-F",
        `#{pane_id}\t#{${ROLE_OPTION}}`,
      ]);
    } catch (err) {
      if (err instanceof TmuxCommandError)
        throw new SessionNotFoundError(`tmux session ${name} does not exist`);
      throw err;
    }
    const result: Partial<Record<PaneRole, string>> = {};
    const lines = out.split("\n").filter(Boolean);
    for (const line of lines) {
      const [id, role] = line.split("\t");
      if (id && (PANE_ROLES as readonly string[]).includes(role ?? "")) result[role as PaneRole] ??= id;
    }
    if (!result.claude && lines[0]) result.claude = lines[0].split("\t")[0]!;
    return result;
  }

  async paneId(name: string, role: PaneRole): Promise<string> {
    const id = (await this.panes(name))[role];
    if (!id) throw new SessionNotFoundError(`tmux session ${name} has no ${role} pane`);
    return id;
  }

  /**
   * Starts capturing the Claude pane into the session log unless a pipe is already open. Only the Claude
   * pane is captured: it is the one whose OSC/BEL notifications matter, while the logs pane tails dev
   * servers (whose bells would be false alarms) and the shell pane is the user's own.
   */
  async ensureCapture(name: string): Promise<string> {
    const pane = await this.paneId(name, "claude");
    const logFile = this.logFile(name);
    const piped = (await this.tmux.run(["display-message", "-p", "-t", pane, "#{pane_pipe}"])).trim();
    // `pipe-pane -o` toggles, so a second call would close the pipe: check first, then open without -o.
    if (piped === "1") return logFile;
    await mkdir(join(this.#opts.logsDir, "sessions"), { recursive: true });
    await this.tmux.run([
      "pipe-pane",
      "-O",
      "-t",
      pane,
      rotatingLogPipeCommand(logFile, this.#opts.rotation ?? DEFAULT_LOG_ROTATION),
    ]);
    return logFile;
  }

  async list(): Promise<SessionInfo[]> {
    let out: string;
    try {
      out = await this.tmux.run([
        "list-sessions",
        "-F",
        "#{session_name}\t#{session_windows}\t#{session_attached}\t#{session_created}",
      ]);
    } catch (err) {
      if (isNoServerError(err)) return [];
      throw err;
    }
    return out
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [name, windows, attached, created] = line.split("\t");
        return {
          name: name ?? "",
          windows: Number(windows),
          attachedClients: Number(attached),
          createdAt: new Date(Number(created) * 1000),
        };
      });
  }

  /** Kills the session (its capture helper sees EOF and exits). Returns false if it did not exist. */
  async kill(name: string): Promise<boolean> {
    const target = exactSessionTarget(name);
    return this.#serialized(name, () => this.tmux.succeeds(["kill-session", "-t", target]));
  }

  /**
   * Types text into a pane exactly as given (`send-keys -l`: no key names, no format expansion), then
   * Enter when asked. Text is bounded so one request cannot flood a pane.
   */
  async sendKeys(name: string, text: string, opts: { pane?: PaneRole; enter?: boolean } = {}): Promise<void> {
    if (typeof text !== "string") throw new TypeError("send-keys text must be a string");
    if (text.length > MAX_SEND_KEYS_CHARS)
      throw new RangeError(
        `send-keys text is ${text.length} characters; the limit is ${MAX_SEND_KEYS_CHARS}`,
      );
    const pane = await this.paneId(name, opts.pane ?? "claude");
    // In copy mode (the user scrolled back) keys drive the mode instead of reaching the program.
    const inMode = (await this.tmux.run(["display-message", "-p", "-t", pane, "#{pane_in_mode}"])).trim();
    if (inMode === "1") await this.tmux.run(["send-keys", "-X", "-t", pane, "cancel"]);
    await this.#sendLiteral(pane, text);
    if (opts.enter) await this.tmux.run(["send-keys", "-t", pane, "Enter"]);
  }

  async #typeLine(pane: string, line: string): Promise<void> {
    await this.#sendLiteral(pane, line);
    await this.tmux.run(["send-keys", "-t", pane, "Enter"]);
  }

  async #sendLiteral(pane: string, text: string): Promise<void> {
    const chars = Array.from(text); // code points, so a chunk never splits a surrogate pair
    for (let i = 0; i < chars.length; i += SEND_KEYS_CHUNK_CHARS) {
      const chunk = chars.slice(i, i + SEND_KEYS_CHUNK_CHARS).join("");
      await this.tmux.run(["send-keys", "-l", "-t", pane, "--", chunk]);
    }
  }

  /** The pane's screen plus `lines` of history, wrapped lines joined. */
  async capture(name: string, opts: { pane?: PaneRole; lines?: number } = {}): Promise<string> {
    const lines = opts.lines ?? 200;
    if (!Number.isSafeInteger(lines) || lines < 0 || lines > 100_000)
      throw new RangeError(`capture lines must be an integer from 0 to 100000, got ${lines}`);
    const pane = await this.paneId(name, opts.pane ?? "claude");
    return this.tmux.run(["capture-pane", "-p", "-J", "-S", String(-lines), "-t", pane]);
  }

  /** Stops the whole dedicated server: hibernation and tests. */
  killServer(): Promise<void> {
    return this.tmux.killServer();
  }

  #serialized<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(name) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.#locks.set(name, settled);
    void settled.then(() => {
      if (this.#locks.get(name) === settled) this.#locks.delete(name);
    });
    return next;
  }
}
