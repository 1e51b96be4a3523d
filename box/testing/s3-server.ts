/**
 * A real S3-protocol server for backup tests: `moto_server` (this machine's Python has it; the notes in
 * ../shared/notes/features-2.md §2 show restic 0.14 passing init/backup/restore/prune against it), started
 * on a free loopback port, and a fault proxy in front of it that answers 403 while a test says so (a new R2
 * token) or refuses connections (the endpoint down). No real waits: the test flips the condition.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createServer, request, type Server } from "node:http";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";
import { waitUntil } from "./wait.ts";

export interface S3Server {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  createBucket(name: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * moto_server: on PATH, or where pyenv puts the commands of its Python (a shell without pyenv's PATH, such
 * as `env -i`, still finds it there). Null when neither has it.
 */
function motoBinary(): string | null {
  const r = spawnSync("sh", ["-c", "command -v moto_server"], { encoding: "utf8" });
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  const shim = join(homedir(), ".pyenv", "shims", "moto_server");
  return spawnSync(shim, ["--help"]).status === 0 ? shim : null;
}

/** Why moto cannot run here, or null. */
export function motoUnavailable(): string | null {
  return motoBinary() ? null : "moto_server is not on PATH (pip install 'moto[server]')";
}

export async function freeLoopbackPort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

export async function startMoto(): Promise<S3Server> {
  const port = await freeLoopbackPort();
  const binary = motoBinary();
  if (!binary) throw new Error(motoUnavailable()!);
  const child: ChildProcess = spawn(binary, ["-H", "127.0.0.1", "-p", String(port)], {
    stdio: "ignore",
    detached: false,
  });
  const endpoint = `http://127.0.0.1:${port}`;
  await waitUntil(
    async () => (await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(1_000) })).status < 500,
    "moto_server to answer",
    60_000,
    100,
  );
  return {
    endpoint,
    // moto accepts any keys; these are distinctive so a leak test can grep for them.
    accessKeyId: "AKIABERTHTESTKEY0001",
    secretAccessKey: "berth-test-secret-key-do-not-leak-1234",
    async createBucket(name) {
      const res = await fetch(`${endpoint}/${name}`, { method: "PUT" });
      if (res.status >= 300) throw new Error(`create bucket ${name}: ${res.status}`);
    },
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once("exit", r)));
    },
  };
}

export interface FaultProxy {
  endpoint: string;
  /** `deny`: answer 403 AccessDenied (a new R2 token); `down`: drop connections; `pass`: forward. */
  mode: "pass" | "deny" | "down";
  /** Requests answered 403 so far. */
  denied: number;
  /** Called before each request: lets a test change `mode` after N requests. */
  onRequest?: (proxy: FaultProxy) => void;
  stop(): Promise<void>;
}

/** An HTTP proxy in front of `upstream` whose behaviour the test controls. */
export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const proxy: FaultProxy = {
    endpoint: "",
    mode: "pass",
    denied: 0,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
  const server: Server = createServer((req, res) => {
    proxy.onRequest?.(proxy);
    if (proxy.mode === "down") {
      req.socket.destroy();
      return;
    }
    if (proxy.mode === "deny") {
      proxy.denied++;
      req.resume();
      res.writeHead(403, { "content-type": "application/xml" });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>',
      );
      return;
    }
    const up = request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  proxy.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}
