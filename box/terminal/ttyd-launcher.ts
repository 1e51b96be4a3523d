/**
 * Runs the real `ttyd` binary as the terminal endpoint. ttyd passes every `?arg=` straight to argv, and tmux
 * runs `#(...)` inside session names, so ttyd's command is a tiny sh guard that accepts exactly one name
 * matching ^[a-z0-9-]{1,32}$ before running `tmux new-session -A -s <name>` (see attachGuardScript).
 *
 * The credential is on ttyd's command line (`--credential`): ttyd 1.7.7 has no file or environment form
 * (upstream issue #872 is open; PR #700 adding one was declined in favour of `--auth-header`). Anyone who
 * can read /proc/<pid>/cmdline on the box sees it, so the box runs ttyd as a dedicated user, mounts /proc
 * with hidepid=invisible, and the firewall admits the port only from the control plane and the tailnet.
 * ttyd also prints the credential at log level NOTICE, so it runs with `-d 3` (errors and warnings only)
 * and any stderr line mentioning a credential or token is dropped before logging.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { request } from "node:http";
import { createServer } from "node:net";
import { delimiter, join } from "node:path";
import { createInterface } from "node:readline";
import { tmuxEnv, tmuxServerArgs } from "../tmux/tmux-command.ts";
import { assertCredentialForHost } from "./auth.ts";
import { type CommonEndpointOptions, silentLogger, type TerminalEndpoint } from "./endpoint-types.ts";
import { ATTACH_ENDED_MARKER, basicAuthHeader, WS_PATH } from "./protocol.ts";

export interface TtydLaunchOptions extends CommonEndpointOptions {
  /** Path of the ttyd executable. */
  binary: string;
  /** `http://127.0.0.1:<agent port>/sessions`: where the attach command asks the agent to ensure a session. */
  ensureSessionUrl?: string;
  readyTimeoutMs?: number;
}

export async function findTtyd(pathVar: string | undefined = process.env.PATH): Promise<string | null> {
  for (const dir of (pathVar ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, "ttyd");
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * The guard ttyd runs; ttyd appends the URL args, so they are its positional parameters. The character
 * class is spelled out because `[a-z]` in a shell pattern depends on the locale's collation. Before it
 * attaches, the agent ensures the session (`ensureUrl`: its loopback endpoint), so the first attach finds
 * the three-pane layout; if the agent cannot, tmux creates a bare session, which the agent lays out on
 * its next pass. After a normal exit it prints ATTACH_ENDED_MARKER and waits to be hung up (see there).
 * Packer's `berth-tmux-attach` is the same script for the box image.
 */
export function attachGuardScript(tmuxArgv: readonly string[], ensureUrl?: string): string {
  return [
    'if [ "$#" -ne 1 ]; then echo "berth: expected exactly one session name" >&2; exit 2; fi',
    'case "$1" in ""|*[!abcdefghijklmnopqrstuvwxyz0123456789-]*) echo "berth: invalid session name" >&2; exit 2;; esac',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, not a template.
    'if [ "${#1}" -gt 32 ]; then echo "berth: session name too long" >&2; exit 2; fi',
    ...(ensureUrl
      ? [
          `curl -fsS -m 10 -o /dev/null -X POST -H 'Content-Type: application/json' --data '{}' ${shellQuote(ensureUrl)}"/$1/ensure" ||`,
          '  echo "berth: the agent could not prepare the session; attaching anyway" >&2',
        ]
      : []),
    `${tmuxArgv.map(shellQuote).join(" ")} new-session -A -s "$1" || exit`,
    `printf ${shellQuote(ATTACH_ENDED_MARKER.replace("\x1b", "\\033").replace("\x07", "\\007"))}`,
    "exec timeout 30 cat >/dev/null",
  ].join("\n");
}

/** A port free on `host` right now (the OS picks it); also used by the box tests. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, host, () => {
      const address = probe.address();
      probe.close(() => (typeof address === "object" && address ? resolve(address.port) : reject()));
    });
  });
}

function probeHttp(host: string, port: number, authorization: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        path: "/token",
        method: "GET",
        headers: authorization ? { authorization } : {},
        timeout: 1000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end();
  });
}

export async function startTtyd(opts: TtydLaunchOptions): Promise<TerminalEndpoint> {
  const host = opts.host ?? "127.0.0.1";
  const log = opts.logger ?? silentLogger;
  assertCredentialForHost(host, opts.credential);
  // ttyd's `-p 0` picks a port but only reports it at NOTICE, which we silence; pick one here instead.
  const port = opts.port ? opts.port : await freePort(host);
  const tmuxArgv = [opts.tmux.bin ?? "tmux", ...tmuxServerArgs(opts.tmux)];
  const args = ["--writable", "--url-arg", "-i", host, "-p", String(port), "-d", "3"];
  if (opts.cwd) args.push("-w", opts.cwd);
  if (opts.credential !== undefined) {
    if (!opts.credential.includes(":"))
      throw new Error("terminal credential must have the form user:password");
    args.push("--credential", opts.credential);
  }
  args.push("/bin/sh", "-c", attachGuardScript(tmuxArgv, opts.ensureSessionUrl), "berth-attach");

  const child: ChildProcess = spawn(opts.binary, args, {
    env: tmuxEnv(opts.tmux.env),
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
  if (child.stderr) {
    createInterface({ input: child.stderr }).on("line", (line) => {
      if (/credential|token|authoriz/i.test(line)) return;
      log.warn({ pid: child.pid }, `ttyd: ${line}`);
    });
  }

  const authorization = opts.credential !== undefined ? basicAuthHeader(opts.credential) : undefined;
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000);
  let lastError = "no answer";
  for (;;) {
    const early = await Promise.race([
      exited.then((code) => `ttyd exited with code ${code} before serving`),
      spawnError.then((err) => `ttyd could not start: ${err.message}`),
      new Promise<null>((r) => setTimeout(() => r(null), 50)),
    ]);
    if (early) throw new Error(early);
    try {
      if ((await probeHttp(host, port, authorization)) === 200) break;
      lastError = "unexpected HTTP status";
    } catch (err) {
      lastError = (err as Error).message;
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`ttyd did not answer on ${host}:${port}: ${lastError}`);
    }
  }
  log.info({ host, port, pid: child.pid }, "ttyd terminal endpoint listening");

  const urlHost = host.includes(":") ? `[${host}]` : host;
  let closing: Promise<void> | null = null;
  return {
    kind: "ttyd",
    host,
    port,
    wsUrl: `ws://${urlHost}:${port}${WS_PATH}`,
    close() {
      closing ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
        await exited;
        clearTimeout(timer);
      })();
      return closing;
    },
  };
}
