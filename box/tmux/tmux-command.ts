import { execFile } from "node:child_process";

/**
 * Which tmux server to talk to. Berth never uses the user's default server: a dedicated socket keeps the
 * agent's sessions apart from anything the user starts by hand, and lets tests run their own servers.
 */
export type TmuxSocket = { path: string } | { name: string };

export interface TmuxServerOptions {
  socket: TmuxSocket;
  /** Config file for a server this call starts (`-f`); `/dev/null` gives tmux defaults. Unset: tmux's own lookup. */
  configFile?: string;
  /** The tmux executable; defaults to `tmux` on PATH. */
  bin?: string;
  /** Environment for the tmux client and, when it starts one, the server (and so every pane). */
  env?: NodeJS.ProcessEnv;
}

export class TmuxCommandError extends Error {
  override name = "TmuxCommandError";
  readonly exitCode: number | null;
  readonly stderr: string;
  constructor(message: string, exitCode: number | null, stderr: string) {
    super(message);
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** Global flags that select the server; shared with the terminal endpoint so both reach the same one. */
export function tmuxServerArgs(opts: Pick<TmuxServerOptions, "socket" | "configFile">): string[] {
  const args = "path" in opts.socket ? ["-S", opts.socket.path] : ["-L", opts.socket.name];
  if (opts.configFile !== undefined) args.push("-f", opts.configFile);
  return args;
}

/**
 * Environment for tmux processes: `TMUX`/`TMUX_PANE` inherited from an enclosing tmux would make the
 * client refuse to nest or talk to the wrong server.
 */
export function tmuxEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env = { ...base };
  delete env.TMUX;
  delete env.TMUX_PANE;
  // Without a UTF-8 locale tmux 3.3a prints tabs in -F output as `_`, which breaks every tab-separated
  // listing (and shows UTF-8 in panes as `_`). systemd units, `env -i` and drivers start with none.
  if (!env.LC_ALL && !env.LC_CTYPE && !env.LANG) env.LANG = "C.UTF-8";
  return env;
}

const NO_SERVER = /no server running|error connecting to|No such file or directory/;

export function isNoServerError(err: unknown): boolean {
  return err instanceof TmuxCommandError && NO_SERVER.test(err.stderr);
}

/** Runs tmux with an argv array (never a shell) against the configured server. */
export class TmuxClient {
  readonly options: TmuxServerOptions;
  constructor(options: TmuxServerOptions) {
    this.options = options;
  }

  /** `input` goes to the client's stdin (for `source-file -`): a way to hand tmux text that must not be in argv. */
  run(args: readonly string[], options: { input?: string } = {}): Promise<string> {
    const argv = [...tmuxServerArgs(this.options), ...args];
    return new Promise((resolve, reject) => {
      const child = execFile(
        this.options.bin ?? "tmux",
        argv,
        { env: tmuxEnv(this.options.env), timeout: 10_000, maxBuffer: 8 * 1024 * 1024 },
        (err, stdout, stderr) => {
          if (!err) return resolve(stdout);
          const code = typeof err.code === "number" ? err.code : null;
          const detail = stderr.trim() || err.message;
          reject(new TmuxCommandError(`tmux ${args[0]} failed: ${detail}`, code, stderr));
        },
      );
      if (options.input !== undefined) child.stdin?.end(options.input);
    });
  }

  /** Like `run`, but a non-zero exit is an answer (`false`), not an error. */
  async succeeds(args: readonly string[]): Promise<boolean> {
    try {
      await this.run(args);
      return true;
    } catch (err) {
      if (err instanceof TmuxCommandError) return false;
      throw err;
    }
  }

  /** Stops this server and every session on it; a server that is not running is not an error. */
  async killServer(): Promise<void> {
    try {
      await this.run(["kill-server"]);
    } catch (err) {
      if (!isNoServerError(err) && !(err instanceof TmuxCommandError && /server exited/.test(err.stderr)))
        throw err;
    }
  }
}
