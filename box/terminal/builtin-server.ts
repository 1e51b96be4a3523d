/**
 * A ttyd-compatible terminal server for machines without a `ttyd` binary (local mode, tests). It speaks
 * ttyd 1.7.7's wire protocol so the control plane's relay cannot tell the two apart, and it is stricter
 * where ttyd is unsafe: the `?arg=` session name is validated before anything runs.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import { hostname } from "node:os";
import type { Duplex } from "node:stream";
import { type IPty, spawn } from "@lydell/node-pty";
import { type RawData, type WebSocket, WebSocketServer } from "ws";
import { isValidSessionName } from "../tmux/names.ts";
import { tmuxEnv, tmuxServerArgs } from "../tmux/tmux-command.ts";
import { assertCredentialForHost, TerminalCredential } from "./auth.ts";
import { type CommonEndpointOptions, silentLogger, type TerminalEndpoint } from "./endpoint-types.ts";
import {
  CLOSE_NORMAL,
  CLOSE_POLICY_VIOLATION,
  CLOSE_PROCESS_FAILED,
  ClientCommand,
  encodeServerMessage,
  parseInit,
  parseSize,
  ServerCommand,
  TTY_SUBPROTOCOL,
  WS_PATH,
} from "./protocol.ts";

export interface BuiltinServerOptions extends CommonEndpointOptions {
  /** ttyd `-W`: without it INPUT is dropped. Default true. */
  writable?: boolean;
  /** TERM for the attach process (ttyd `-T`). */
  terminalType?: string;
  /** Client options sent as SET_PREFERENCES (ttyd `-t key=value`). */
  preferences?: Record<string, unknown>;
  /**
   * Runs after the session name is validated and the client authenticated, before the attach: the agent
   * passes `TmuxSessions.ensure`, so a first attach gets the three-pane layout, not a bare shell.
   */
  onAttach?: (session: string) => Promise<unknown>;
  /** Pause reading the pty when this many bytes wait in the socket's send buffer… */
  highWaterMark?: number;
  /** …and resume below this many. */
  lowWaterMark?: number;
  /** Ping idle clients this often and drop those that miss a pong (ttyd: 5 s). 0 disables. */
  pingIntervalMs?: number;
  /** Largest client message accepted. */
  maxPayload?: number;
  /** Called when a terminal's pty is paused or resumed (client PAUSE or socket backpressure): metrics. */
  onFlowChange?: (event: {
    session: string;
    paused: boolean;
    byClient: boolean;
    byBackpressure: boolean;
  }) => void;
}

const DEFAULT_SIZE = { columns: 80, rows: 24 };

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function rejectUpgrade(socket: Duplex, status: number, reason: string, extraHeaders: string[] = []): void {
  const body = `${reason}\n`;
  socket.end(
    [
      `HTTP/1.1 ${status} ${reason}`,
      "Connection: close",
      "Content-Type: text/plain; charset=utf-8",
      `Content-Length: ${Buffer.byteLength(body)}`,
      ...extraHeaders,
      "",
      body,
    ].join("\r\n"),
    // Closed once written, not only ended: the HTTP server allows half-open connections.
    () => socket.destroy(),
  );
}

function offeredProtocols(req: IncomingMessage): string[] {
  const header = req.headers["sec-websocket-protocol"];
  return (header ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
}

export async function startBuiltinTerminalServer(opts: BuiltinServerOptions): Promise<TerminalEndpoint> {
  const host = opts.host ?? "127.0.0.1";
  const log = opts.logger ?? silentLogger;
  assertCredentialForHost(host, opts.credential);
  const credential = opts.credential === undefined ? null : new TerminalCredential(opts.credential);
  const writable = opts.writable ?? true;
  const high = opts.highWaterMark ?? 1024 * 1024;
  const low = opts.lowWaterMark ?? 256 * 1024;
  if (!(low < high)) throw new RangeError("lowWaterMark must be below highWaterMark");
  const pingIntervalMs = opts.pingIntervalMs ?? 5000;
  const maxQueuedBytes = opts.maxPayload ?? 1024 * 1024;
  const tmuxBin = opts.tmux.bin ?? "tmux";
  const title = (session: string) => `tmux new-session -A -s ${session} (${hostname()})`;
  const preferences = JSON.stringify(opts.preferences ?? {});

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: maxQueuedBytes,
    handleProtocols: (protocols) => (protocols.has(TTY_SUBPROTOCOL) ? TTY_SUBPROTOCOL : false),
  });
  const ptys = new Set<IPty>();
  const exits = new Set<Promise<void>>();

  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method === "GET" && path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    // ttyd's /token: Basic auth when a credential is set, then the token the init message must carry.
    if (req.method === "GET" && path === "/token") {
      if (credential && !credential.matchesAuthorizationHeader(req.headers.authorization)) {
        res.writeHead(401, { "www-authenticate": 'Basic realm="ttyd"' }).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ token: credential?.token ?? "" }));
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  });

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    const url = new URL(req.url ?? "/", "http://x");
    const remote = req.socket.remoteAddress;
    if (url.pathname !== WS_PATH) return rejectUpgrade(socket, 404, "Not Found");
    if (credential && !credential.matchesAuthorizationHeader(req.headers.authorization)) {
      log.warn({ remote }, "terminal upgrade refused: missing or wrong Basic credential");
      return rejectUpgrade(socket, 401, "Unauthorized", ['WWW-Authenticate: Basic realm="ttyd"']);
    }
    if (!offeredProtocols(req).includes(TTY_SUBPROTOCOL))
      return rejectUpgrade(socket, 400, "Bad Request: the tty subprotocol is required");
    // ttyd appends every arg= to argv; here exactly one, and only a valid session name, ever reaches tmux.
    const args = url.searchParams.getAll("arg");
    const session = args[0];
    if (args.length !== 1 || !isValidSessionName(session)) {
      log.warn({ remote, args: args.length }, "terminal upgrade refused: invalid session arg");
      return rejectUpgrade(
        socket,
        400,
        "Bad Request: arg must be one session name matching ^[a-z0-9-]{1,32}$",
      );
    }
    wss.handleUpgrade(req, socket, head, (ws) => serve(ws, session, remote));
  });

  function serve(ws: WebSocket, session: string, remote: string | undefined): void {
    // "starting" lasts until tmux's first output, not just until it is spawned: until tmux has attached,
    // the pty is in the kernel's cooked mode, where a ^C typed early is a SIGINT that kills the attach,
    // ^U erases the line and everything is echoed. tmux writes nothing before it has made the pty raw.
    let state: "init" | "starting" | "running" | "closed" = "init";
    let pty: IPty | null = null;
    // Messages that arrive before the terminal is up (see `state`); bounded like a single message.
    const queued: Buffer[] = [];
    let queuedBytes = 0;
    let clientPaused = false;
    let backpressured = false;
    let ptyPaused = false;
    let alive = true;

    const updateFlow = () => {
      if (!pty) return;
      const shouldPause = clientPaused || backpressured;
      if (shouldPause === ptyPaused) return;
      ptyPaused = shouldPause;
      if (shouldPause) pty.pause();
      else pty.resume();
      opts.onFlowChange?.({
        session,
        paused: shouldPause,
        byClient: clientPaused,
        byBackpressure: backpressured,
      });
    };

    const afterSend = () => {
      if (backpressured && ws.bufferedAmount < low) {
        backpressured = false;
        updateFlow();
      }
    };

    const send = (command: number, body: string | Uint8Array) => {
      if (ws.readyState !== ws.OPEN) return;
      ws.send(encodeServerMessage(command, body), { binary: true }, afterSend);
      if (!backpressured && ws.bufferedAmount > high) {
        backpressured = true;
        updateFlow();
      }
    };

    const close = (code: number, reason: string) => {
      if (state === "closed") return;
      state = "closed";
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
    };

    const handle = (msg: Buffer) => {
      const command = msg[0];
      if (command === ClientCommand.INPUT) {
        if (writable && msg.length > 1) pty!.write(msg.subarray(1) as unknown as string);
      } else if (command === ClientCommand.RESIZE_TERMINAL) {
        let size: ReturnType<typeof parseSize> = {};
        try {
          size = parseSize(JSON.parse(msg.subarray(1).toString("utf8")));
        } catch {
          // ttyd ignores a malformed resize too.
        }
        try {
          pty!.resize(size.columns ?? pty!.cols, size.rows ?? pty!.rows);
        } catch {
          // The process is exiting; its exit closes the socket.
        }
      } else if (command === ClientCommand.PAUSE) {
        clientPaused = true;
        updateFlow();
      } else if (command === ClientCommand.RESUME) {
        clientPaused = false;
        updateFlow();
      }
      // A second init ('{') and unknown commands are ignored, as in ttyd.
    };

    const start = async (init: Record<string, unknown>) => {
      state = "starting";
      const size = { ...DEFAULT_SIZE, ...parseSize(init) };
      try {
        await opts.onAttach?.(session);
      } catch (err) {
        log.error({ session, err: String(err) }, "terminal attach refused: preparing the session failed");
        return close(CLOSE_PROCESS_FAILED, "session unavailable");
      }
      if (state !== "starting") return; // the client left while the session was prepared
      const env = tmuxEnv(opts.tmux.env);
      env.TERM = opts.terminalType ?? "xterm-256color";
      try {
        pty = spawn(tmuxBin, [...tmuxServerArgs(opts.tmux), "new-session", "-A", "-s", session], {
          name: env.TERM,
          cols: size.columns,
          rows: size.rows,
          cwd: opts.cwd ?? process.env.HOME ?? "/",
          env,
          encoding: null,
        });
      } catch (err) {
        log.error({ session, err: String(err) }, "terminal attach failed to start");
        return close(CLOSE_PROCESS_FAILED, "attach failed");
      }
      const term = pty;
      ptys.add(term);
      let settle!: () => void;
      const exited = new Promise<void>((r) => {
        settle = r;
      });
      exits.add(exited);
      term.onExit(({ exitCode }) => {
        ptys.delete(term);
        exits.delete(exited);
        settle();
        log.info({ session, exitCode }, "terminal process exited");
        close(exitCode === 0 ? CLOSE_NORMAL : CLOSE_PROCESS_FAILED, "process exited");
      });
      // Same order as ttyd: title, preferences, then output.
      send(ServerCommand.SET_WINDOW_TITLE, title(session));
      send(ServerCommand.SET_PREFERENCES, preferences);
      term.onData((data) => {
        send(ServerCommand.OUTPUT, data as unknown as Buffer);
        if (state !== "starting") return;
        state = "running";
        for (const msg of queued.splice(0)) handle(msg);
      });
      if (state !== "starting") {
        term.kill("SIGHUP");
        return;
      }
      log.info({ session, remote }, "terminal attached");
    };

    ws.on("message", (data) => {
      const msg = toBuffer(data);
      if (state === "closed" || msg.length === 0) return;
      if (state === "running") return handle(msg);
      if (state === "starting") {
        queuedBytes += msg.length;
        if (queuedBytes > maxQueuedBytes)
          return close(CLOSE_POLICY_VIOLATION, "too much input before the terminal started");
        queued.push(msg);
        return;
      }
      // ttyd drops a client whose first message is anything but the JSON init.
      const init = parseInit(msg);
      if (!init) return close(CLOSE_POLICY_VIOLATION, "the first message must be the JSON init");
      if (credential && !credential.matchesToken(init.AuthToken)) {
        log.warn({ session, remote }, "terminal init refused: wrong AuthToken");
        return close(CLOSE_POLICY_VIOLATION, "authentication failed");
      }
      void start(init);
    });

    const ping =
      pingIntervalMs > 0
        ? setInterval(() => {
            if (ws.readyState !== ws.OPEN) return;
            if (!alive) return ws.terminate();
            alive = false;
            ws.ping();
          }, pingIntervalMs)
        : null;
    ws.on("pong", () => {
      alive = true;
    });
    ws.on("error", (err) => log.warn({ session, err: err.message }, "terminal socket error"));
    ws.on("close", () => {
      state = "closed";
      if (ping) clearInterval(ping);
      // Like ttyd's default `-s SIGHUP`: the tmux client detaches, the session keeps running.
      if (pty && ptys.has(pty)) pty.kill("SIGHUP");
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("terminal server has no TCP address");
  const port = address.port;
  const urlHost = host.includes(":") ? `[${host}]` : host;
  log.info({ host, port, auth: credential !== null }, "built-in terminal server listening");

  let closing: Promise<void> | null = null;
  return {
    kind: "builtin",
    host,
    port,
    wsUrl: `ws://${urlHost}:${port}${WS_PATH}`,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((r) => server.close(() => r()));
        for (const client of wss.clients) client.terminate();
        for (const term of ptys) term.kill("SIGHUP");
        server.closeAllConnections();
        // A tmux client leaves on SIGHUP; anything still there after 2 s is not left behind either.
        const straggler = setTimeout(() => {
          for (const term of ptys) term.kill("SIGKILL");
        }, 2000);
        await Promise.all([...exits]);
        clearTimeout(straggler);
        await closed;
      })();
      return closing;
    },
  };
}
