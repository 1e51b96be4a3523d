/**
 * `berth` as a client of a control plane, local or remote: it speaks only the public HTTP API (`/api/v1`,
 * described at /api/v1/openapi.json) and the terminal relay, never the database. Operator commands
 * (serve, migrate, stacks) live in ../cli.ts, which hands client commands here; runtime/bin/berth starts
 * this module directly for them, so a client command loads none of the control plane.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline/promises";
import { parseArgs } from "node:util";
import { ApiClient, ClientError, Exit } from "./api.ts";
import { attachTerminal } from "./attach.ts";
import { backupCommand, exportCommand } from "./backups.ts";
import { followBuild } from "./build-progress.ts";
import { CLIENT_COMMANDS } from "./commands.ts";
import { completionScript } from "./completion.ts";
import { credentialsPath, readCredentials, removeCredentials, writeCredentials } from "./credentials.ts";
import { findWorkspace, table, type WorkspaceSummary } from "./workspace-ref.ts";

/** Personal API tokens start with this (runtime/domain/identity/api-tokens.ts; the client imports no server code). */
const API_TOKEN_PREFIX = "berth_pat_";

const EXIT_CODES = `Exit codes:
  0  done            3  not logged in, or the token was refused
  1  failed (a build ended failed or canceled, a server error)
  2  usage error     4  not found (or not yours)
  5  wrong state (a build already runs, the box is asleep)
  6  the control plane could not be reached`;

export const CLIENT_HELP = `Client commands (talk to a control plane over its API):
  login <url>       sign in; the token is read from BERTH_TOKEN or stdin, stored 0600
  logout            forget the stored token
  ws                list | create | hibernate | wake | rm   workspaces
  attach            <workspace> [session]   the tmux session in this terminal
  preview           list | open | share   a workspace's previews
  backup            list | create | restore   a workspace's backups
  export            <workspace> <snapshot> -o <file>   a snapshot as .tar.gz
  completion        bash | zsh   print a shell completion script

${EXIT_CODES}`;

export const HELP: Record<string, string> = {
  login: `Usage: berth login <url>

Signs in to the control plane at <url> and stores the URL and token in
$XDG_CONFIG_HOME/berth/credentials.json (default ~/.config/berth), file mode 0600.
The token is read from the BERTH_TOKEN environment variable, else from stdin (a prompt
that does not echo on a terminal); it is never taken from the command line, where
other users could see it, and never printed.
The token is a personal API token (berth_pat_…), made in the web app under
API tokens (<url>/#/tokens): the one way in on a hosted control plane. In local mode
the login token the control plane printed (BERTH_LOCAL_TOKEN, or the #token= part of
its login link) works too. The token is checked (GET /api/v1/me) before it is stored.

${EXIT_CODES}
`,
  logout: `Usage: berth logout

Deletes the stored credentials.
`,
  ws: `Usage: berth ws <command> [options]

  list                      your workspaces (--json: the API's objects; --names: names only)
  create [name]             create one and follow its first build
        --location <l> --server-type <t> --volume-gb <n>
  hibernate <workspace>     stop the server, keep the disk
  wake <workspace>          start it again
  rm <workspace> --yes      destroy it and its disk

<workspace> is a name or an id. Changes run as builds: the log streams while one runs,
with a progress line on a terminal. --no-wait returns once the build is queued.
--json prints the result as JSON on stdout (the log goes to stderr).

${EXIT_CODES}
`,
  attach: `Usage: berth attach <workspace> [session] [--wake]

Opens the workspace's tmux session [session] (default: the first open one, or a new
'main') in this terminal, through the control plane's terminal relay. Resizing the
window resizes tmux; a dropped connection is retried with backoff and the screen comes
back as it was.
  Ctrl-] d      detach: leave tmux running and exit (Ctrl-] Ctrl-] sends one Ctrl-])
  --wake        wake a hibernated workspace without asking

${EXIT_CODES}
`,
  preview: `Usage: berth preview <command> <workspace> [port] [options]

  list <workspace>            dev servers seen on the box and declared ports (--json)
  open <workspace> <port>     open the preview in a browser, signed in (--print: only print the URL)
  share <workspace> <port>    a link anyone can open until it expires (--ttl <seconds>, --json)

${EXIT_CODES}
`,
  backup: `Usage: berth backup <command> <workspace> [options]

  list <workspace>                       snapshots in the workspace's repository (--json: runs too)
  create <workspace>                     back up now (the workspace must be running)
  restore <workspace> <snapshot> [path…] --yes
                                         restore all of user/, or the given paths (user/…);
                                         a safety snapshot is taken first: restoring it undoes this

<snapshot> is an id or the start of one, as 'backup list' shows. create and restore run
on the box; the client shows their progress until they end (--no-wait: return once
asked). --json prints the result as JSON on stdout.

${EXIT_CODES}
`,
  export: `Usage: berth export <workspace> <snapshot> -o <file>

Downloads a snapshot as a .tar.gz (works while the workspace is hibernated) into <file>,
created with mode 0600. Without -o (or with -o -) it goes to stdout, which must not be
a terminal.

${EXIT_CODES}
`,
  completion: `Usage: berth completion <bash|zsh>

Prints a completion script. bash: add 'source <(berth completion bash)' to ~/.bashrc.
zsh: add 'source <(berth completion zsh)' to ~/.zshrc (after compinit).
`,
};

interface Out {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  stdin: NodeJS.ReadStream;
}

const usage = (command: string) => new ClientError(Exit.USAGE, `usage error\n\n${HELP[command] ?? ""}`);

function connect(): ApiClient {
  const credentials = readCredentials();
  if (!credentials) throw new ClientError(Exit.AUTH, "not logged in: run 'berth login <url>' first");
  return new ApiClient(credentials.url, credentials.token);
}

async function readToken(io: Out, base: string): Promise<string> {
  const fromEnv = process.env.BERTH_TOKEN;
  if (fromEnv) return fromEnv.trim();
  if (io.stdin.isTTY) {
    io.stderr.write(`Paste an API token (make one at ${base}/#/tokens); input hidden: `);
    io.stdin.setRawMode(true);
    const token = await new Promise<string>((resolve) => {
      let value = "";
      const onData = (chunk: Buffer) => {
        for (const ch of chunk.toString("utf8")) {
          if (ch === "\r" || ch === "\n") {
            io.stdin.off("data", onData);
            resolve(value);
            return;
          }
          if (ch === "\u0003") process.exit(130);
          if (ch === "\u007f") value = value.slice(0, -1);
          else value += ch;
        }
      };
      io.stdin.on("data", onData);
      io.stdin.resume();
    });
    io.stdin.setRawMode(false);
    io.stdin.pause();
    io.stderr.write("\n");
    return token.trim();
  }
  let text = "";
  for await (const chunk of io.stdin) text += chunk;
  return text.trim();
}

async function login(args: string[], io: Out): Promise<number> {
  const [url] = args;
  if (!url || !/^https?:\/\/[^/]+/.test(url)) throw usage("login");
  const base = url.replace(/\/+$/, "");
  const token = await readToken(io, base);
  if (!token) throw new ClientError(Exit.USAGE, "no token given (set BERTH_TOKEN or pipe it on stdin)");
  // Tokens are printable ASCII. Anything else (a second line piped in, the shortened "berth_pat_ab12…" the
  // tokens page lists) cannot go in a header: fetch's TypeError quotes the header, token and all, and
  // would reach the terminal as a stack trace.
  if (!/^[\x20-\x7e]+$/.test(token)) {
    throw new ClientError(
      Exit.USAGE,
      `that is not a whole API token (it has line breaks or characters a token never has); copy it again from ${base}/#/tokens`,
    );
  }
  const api = new ApiClient(base, token);
  // Hosted mode signs people in with Clerk, whose session tokens live a minute: nothing the client could
  // keep. The client signs in with a personal API token (berth_pat_…) made on the web app's tokens page.
  const { mode } = await api.call<{ mode: string }>("GET", "/api/v1/auth/config");
  if (mode !== "local" && !token.startsWith(API_TOKEN_PREFIX)) {
    throw new ClientError(
      Exit.AUTH,
      `${api.url} runs in hosted mode: log in with a personal API token (${API_TOKEN_PREFIX}…), not a session token (those expire within a minute). Create one at ${api.url}/#/tokens`,
    );
  }
  const { user } = await api.call<{ user: { id: string } }>("GET", "/api/v1/me");
  const path = writeCredentials({ url: api.url, token });
  io.stderr.write(`Logged in to ${api.url} as user ${user.id}. Credentials: ${path} (mode 0600)\n`);
  return Exit.OK;
}

/** After a change: follow its build unless told not to; the exit code says how it ended. */
async function transition(
  api: ApiClient,
  io: Out,
  answer: { workspace: WorkspaceSummary; build: { id: string; status: string; transition: string } },
  flags: { json: boolean; wait: boolean },
): Promise<number> {
  let status = answer.build.status;
  const log = flags.json ? io.stderr : io.stdout;
  if (flags.wait) status = await followBuild(api, answer.build.id, log);
  let ok = !flags.wait || status === "succeeded";
  // A start build ends when the server runs; the workspace is ready once its box agent has checked in.
  if (flags.wait && ok && answer.build.transition === "start")
    ok = await untilReady(api, answer.workspace.id, log);
  if (flags.json) {
    const workspace = flags.wait
      ? await api
          .call("GET", `/api/v1/workspaces/${answer.workspace.id}`)
          .then((r) => r.workspace)
          .catch(() => answer.workspace)
      : answer.workspace;
    io.stdout.write(`${JSON.stringify({ workspace, build: { id: answer.build.id, status } })}\n`);
  } else if (flags.wait) {
    const line = ok ? `${answer.workspace.name}: done` : `${answer.workspace.name}: build ${status}`;
    io.stderr.write(`${line}\n`);
  } else {
    io.stderr.write(`${answer.workspace.name}: build ${answer.build.id} queued\n`);
  }
  return ok ? Exit.OK : Exit.FAILED;
}

const READY_TIMEOUT_MS = 5 * 60_000;

/** Polls until the workspace is ready (true) or has failed or stalled (false). */
async function untilReady(api: ApiClient, id: string, log: NodeJS.WriteStream): Promise<boolean> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let said = false;
  for (;;) {
    const { workspace } = await api.poll<{ workspace: WorkspaceSummary }>(`/api/v1/workspaces/${id}`);
    if (workspace.state === "ready") return true;
    if (["failed", "unhealthy", "destroyed"].includes(workspace.state) || Date.now() > deadline) {
      log.write(`the workspace is ${workspace.state}\n`);
      return false;
    }
    if (!said) log.write("==> waiting for the box to report ready\n");
    said = true;
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function ws(args: string[], io: Out): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      json: { type: "boolean" },
      names: { type: "boolean" },
      "no-wait": { type: "boolean" },
      yes: { type: "boolean", short: "y" },
      location: { type: "string" },
      "server-type": { type: "string" },
      "volume-gb": { type: "string" },
    },
  });
  const [sub, ref] = positionals;
  const flags = { json: values.json === true, wait: values["no-wait"] !== true };
  switch (sub) {
    case "list": {
      const api = connect();
      const { workspaces } = await api.call<{ workspaces: WorkspaceSummary[] }>("GET", "/api/v1/workspaces");
      if (values.json) io.stdout.write(`${JSON.stringify(workspaces, null, 2)}\n`);
      else if (values.names) io.stdout.write(workspaces.map((w) => `${w.name}\n`).join(""));
      else if (!workspaces.length) io.stderr.write("No workspaces. Create one: berth ws create <name>\n");
      else {
        io.stdout.write(
          table([
            ["NAME", "STATE", "ID", "CREATED"],
            ...workspaces.map((w) => [w.name, w.state, w.id, w.createdAt]),
          ]),
        );
      }
      return Exit.OK;
    }
    case "create": {
      const api = connect();
      const body: Record<string, unknown> = {};
      if (ref) body.name = ref;
      if (values.location) body.location = values.location;
      if (values["server-type"]) body.serverType = values["server-type"];
      if (values["volume-gb"] !== undefined) {
        const n = Number(values["volume-gb"]);
        if (!Number.isInteger(n)) throw new ClientError(Exit.USAGE, "--volume-gb must be a whole number");
        body.volumeSizeGb = n;
      }
      return transition(api, io, await api.call("POST", "/api/v1/workspaces", body), flags);
    }
    case "hibernate":
    case "wake":
    case "rm": {
      if (!ref) throw usage("ws");
      if (sub === "rm" && !values.yes) {
        throw new ClientError(
          Exit.USAGE,
          "'ws rm' destroys the workspace and its disk; add --yes to confirm",
        );
      }
      const api = connect();
      const w = await findWorkspace(api, ref);
      const answer =
        sub === "rm"
          ? await api.call("DELETE", `/api/v1/workspaces/${w.id}`)
          : await api.call("POST", `/api/v1/workspaces/${w.id}/${sub}`);
      return transition(api, io, answer, flags);
    }
    default:
      throw usage("ws");
  }
}

async function ask(io: Out, question: string): Promise<boolean> {
  if (!io.stdin.isTTY) return false;
  const rl = createInterface({ input: io.stdin, output: io.stderr });
  // Ctrl-C reaches readline as a key, not a signal; without a listener of ours the question rejected
  // with readline's AbortError, which berth printed as a crash with its stack trace.
  const interrupted = new AbortController();
  rl.once("SIGINT", () => interrupted.abort());
  try {
    return /^(y|yes|)$/i.test((await rl.question(question, { signal: interrupted.signal })).trim());
  } catch (err) {
    if (!interrupted.signal.aborted) throw err;
    io.stderr.write("\n");
    throw new ClientError(Exit.INTERRUPTED, "interrupted; nothing was changed");
  } finally {
    rl.close();
  }
}

/** Brings a workspace to ready (asking first, unless --wake), following the build. False if declined. */
async function ensureAwake(api: ApiClient, io: Out, id: string, autoWake: boolean): Promise<boolean> {
  for (;;) {
    const { workspace } = await api.call<{ workspace: WorkspaceSummary }>("GET", `/api/v1/workspaces/${id}`);
    if (workspace.state === "ready" || workspace.state === "unhealthy") return true;
    if (workspace.state === "hibernated") {
      if (!autoWake && !(await ask(io, `'${workspace.name}' is hibernated. Wake it? [Y/n] `))) return false;
      const answer = await api.call("POST", `/api/v1/workspaces/${id}/wake`);
      if ((await followBuild(api, answer.build.id, io.stderr)) !== "succeeded") {
        throw new ClientError(Exit.FAILED, "waking the workspace failed; see the log above");
      }
      continue;
    }
    const { builds } = await api.call<{ builds: { id: string; status: string }[] }>(
      "GET",
      `/api/v1/workspaces/${id}/builds`,
    );
    const running = builds.find((b) => b.status === "pending" || b.status === "running");
    if (running) {
      io.stderr.write(`'${workspace.name}' is ${workspace.state}; waiting for its build…\n`);
      await followBuild(api, running.id, io.stderr);
    } else if (["provisioning", "starting", "waking"].includes(workspace.state)) {
      // The server runs; the box agent has not checked in yet.
      if (!(await untilReady(api, id, io.stderr))) {
        throw new ClientError(Exit.FAILED, "the workspace did not become ready");
      }
    } else {
      throw new ClientError(Exit.CONFLICT, `the workspace is ${workspace.state}; nothing to attach to`);
    }
  }
}

async function attach(args: string[], io: Out): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: { wake: { type: "boolean" } },
  });
  const [ref, sessionName] = positionals;
  if (!ref) throw usage("attach");
  const api = connect();
  const w = await findWorkspace(api, ref);
  if (!(await ensureAwake(api, io, w.id, values.wake === true))) {
    throw new ClientError(
      Exit.CONFLICT,
      `'${w.name}' is hibernated; 'berth ws wake ${w.name}' or attach --wake`,
    );
  }
  const { sessions } = await api.call<{ sessions: { id: string; name: string }[] }>(
    "GET",
    `/api/v1/workspaces/${w.id}/sessions`,
  );
  let session = sessionName ? sessions.find((s) => s.name === sessionName) : sessions[0];
  if (!session) {
    const created = await api.call<{ session: { id: string; name: string } }>(
      "POST",
      `/api/v1/workspaces/${w.id}/sessions`,
      { name: sessionName ?? "main" },
    );
    session = created.session;
  }
  return attachTerminal(api, io, {
    sessionId: session.id,
    sessionName: session.name,
    onAsleep: () => ensureAwake(api, io, w.id, values.wake === true),
  });
}

interface PreviewSummary {
  id: string;
  port: number;
  source: string;
  framework: string | null;
  share: string;
  pathUrl: string;
}

async function preview(args: string[], io: Out): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: { json: { type: "boolean" }, print: { type: "boolean" }, ttl: { type: "string" } },
  });
  const [sub, ref, portArg] = positionals;
  if (!sub || !["list", "open", "share"].includes(sub) || !ref || (sub !== "list" && !portArg)) {
    throw usage("preview");
  }
  const api = connect();
  const w = await findWorkspace(api, ref);
  const { previews } = await api.call<{ previews: PreviewSummary[] }>(
    "GET",
    `/api/v1/workspaces/${w.id}/previews`,
  );
  if (sub === "list") {
    if (values.json) io.stdout.write(`${JSON.stringify(previews, null, 2)}\n`);
    else if (!previews.length) io.stderr.write("No previews: start a dev server in the workspace.\n");
    else {
      io.stdout.write(
        table([
          ["PORT", "SOURCE", "FRAMEWORK", "SHARE", "URL"],
          ...previews.map((p) => [String(p.port), p.source, p.framework ?? "-", p.share, p.pathUrl]),
        ]),
      );
    }
    return Exit.OK;
  }
  const target = previews.find((p) => String(p.port) === portArg || p.id === portArg);
  if (!target)
    throw new ClientError(Exit.NOT_FOUND, `no preview on port ${portArg} (see 'berth preview list ${ref}')`);
  if (sub === "share") {
    const body: Record<string, unknown> = {};
    if (values.ttl !== undefined) body.ttlSeconds = Number(values.ttl);
    const share = await api.call<{ url: string; expiresAt: string }>(
      "POST",
      `/api/v1/previews/${target.id}/share`,
      body,
    );
    if (values.json) io.stdout.write(`${JSON.stringify(share)}\n`);
    else io.stdout.write(`${share.url}\n(anyone with this link, until ${share.expiresAt})\n`);
    return Exit.OK;
  }
  // open: a one-time sign-in URL on the preview's own host; without a preview domain, the path form.
  const url = await api
    .call<{ url: string }>("POST", `/api/v1/previews/${target.id}/open`, {})
    .then((r) => r.url)
    .catch((err: unknown) => {
      if (err instanceof ClientError && err.exitCode === Exit.CONFLICT) return target.pathUrl;
      throw err;
    });
  if (values.print) {
    io.stdout.write(`${url}\n`);
    return Exit.OK;
  }
  const opener = process.platform === "darwin" ? "open" : "xdg-open";
  const child = spawn(opener, [url], { stdio: "ignore", detached: true });
  // Waited for: without an opener (a server over SSH) the error comes a tick after the spawn, when
  // `berth` has already exited and the URL would never be shown.
  const started = await new Promise<boolean>((resolve) => {
    child.once("spawn", () => resolve(true));
    child.once("error", () => resolve(false));
  });
  if (!started) io.stderr.write(`Open this URL in a browser (valid once, for a minute):\n${url}\n`);
  child.unref();
  return Exit.OK;
}

/** Runs a client command; the exit code is returned, never thrown. */
export async function runClient(argv: string[], io: Out = process): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || !(CLIENT_COMMANDS as readonly string[]).includes(command)) {
    io.stderr.write(`berth: unknown command '${command ?? ""}'\n\n${CLIENT_HELP}\n`);
    return Exit.USAGE;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    io.stdout.write(HELP[command]!);
    return Exit.OK;
  }
  try {
    switch (command) {
      case "login":
        return await login(rest, io);
      case "logout":
        io.stderr.write(
          removeCredentials() ? `Logged out (removed ${credentialsPath()}).\n` : "Not logged in.\n",
        );
        return Exit.OK;
      case "ws":
        return await ws(rest, io);
      case "attach":
        return await attach(rest, io);
      case "preview":
        return await preview(rest, io);
      case "backup":
        return await backupCommand(rest, io, { connect, usage });
      case "export":
        return await exportCommand(rest, io, { connect, usage });
      default: {
        const shell = rest[0];
        if (shell !== "bash" && shell !== "zsh") throw usage("completion");
        io.stdout.write(completionScript(shell));
        return Exit.OK;
      }
    }
  } catch (err) {
    if (err instanceof ClientError) {
      io.stderr.write(`berth: ${err.message}\n`);
      return err.exitCode;
    }
    if ((err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr.write(`berth: ${(err as Error).message}\n\n${HELP[command]}`);
      return Exit.USAGE;
    }
    throw err;
  }
}

// Run directly (runtime/bin/berth does for client commands): no control-plane module is loaded.
if (import.meta.main) {
  runClient(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`berth: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(Exit.FAILED);
    },
  );
}
