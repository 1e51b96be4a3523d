import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { PreviewPayload } from "../protocol.ts";
import { waitUntil } from "../testing/wait.ts";
import { guessFramework } from "./framework.ts";
import { PreviewScanner } from "./preview-scanner.ts";
import { decodeIpv6, parseProcNetTcp } from "./proc-net.ts";

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41234 1 0000000000000000 100 0 0 10 0
   1: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41235 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1538 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 41299 1 0000000000000000 20 4 30 10 -1
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 51234 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 51235 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 51236 1 0000000000000000 100 0 0 10 0
`;

describe("parseProcNetTcp", () => {
  it("keeps LISTEN sockets and decodes little-endian addresses and big-endian ports", () => {
    expect(parseProcNetTcp(TCP, 4)).toEqual([
      { family: 4, address: "127.0.0.1", port: 5432, uid: 1000, inode: 41234 },
      { family: 4, address: "0.0.0.0", port: 3000, uid: 0, inode: 41235 },
    ]);
    expect(parseProcNetTcp(TCP6, 6).map((s) => [s.address, s.port])).toEqual([
      ["::", 3000],
      ["::1", 8080],
      ["::ffff:127.0.0.1", 9000],
    ]);
    expect(decodeIpv6("B80D0120000000000000000001000000")).toBe("2001:db8::1");
  });

  it("names the line of malformed input", () => {
    expect(() => parseProcNetTcp("header\n 0: garbage\n", 4)).toThrow(/line 2: expected at least 10 columns/);
  });
});

describe("guessFramework", () => {
  const cases: Array<[string[], string | null, string]> = [
    [["node", "/app/node_modules/.bin/vite", "--port", "5173"], "vite", "node vite"],
    [["node", "/app/node_modules/vite/bin/vite.js"], "vite", "node vite.js"],
    [["next-server (v15.1.0)"], "next", "next-server (v15.1.0)"],
    [["node", "/app/node_modules/.bin/next", "dev"], "next", "node next"],
    [["node", "/w/node_modules/.bin/astro", "dev"], "astro", "node astro"],
    [["puma 6.4.2 (tcp://0.0.0.0:3000) [app]"], "rails", "puma 6.4.2 (tcp://0.0.0.0:3000) [app]"],
    [["ruby", "bin/rails", "server"], "rails", "ruby rails"],
    [["python3", "manage.py", "runserver", "0.0.0.0:8000"], "django", "python3 manage.py"],
    [["python3", "-m", "http.server", "8000"], "python-http.server", "python3 -m http.server"],
    [["/usr/bin/python3", "/home/u/.local/bin/uvicorn", "main:app"], "fastapi", "python3 uvicorn"],
    [["php", "-S", "localhost:8000"], "php", "php localhost:8000"],
    [["postgres", "-D", "/data"], null, "postgres"],
    [[], null, "unknown"],
  ];
  it.each(cases)("%j → %s", (argv, framework, process) => {
    const g = guessFramework(argv);
    expect(g.framework).toBe(framework);
    expect(g.process).toBe(process);
    expect(g.protocol).toBe(framework ? "http" : "tcp");
  });
});

describe("PreviewScanner on this machine's /proc", () => {
  const servers: Server[] = [];
  const children: ChildProcess[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
    for (const c of children.splice(0)) c.kill("SIGKILL");
  });

  async function listen(): Promise<number> {
    const s = createServer((_q, r) => r.end("ok"));
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    return (s.address() as AddressInfo).port;
  }

  it("reports a real server of ours as open, then closed after two empty scans", async () => {
    const port = await listen();
    const seen: PreviewPayload[] = [];
    const scanner = new PreviewScanner({
      owner: { ancestors: () => [process.pid] },
      publish: (p) => seen.push(p),
    });
    const first = await scanner.scan();
    const mine = first.find((p) => p.port === port);
    expect(mine).toMatchObject({
      port,
      address: "127.0.0.1",
      state: "open",
      pid: process.pid,
      protocol: "tcp",
    });
    expect(mine!.process).toMatch(/^node/);
    expect((await scanner.scan()).find((p) => p.port === port)).toBeUndefined(); // no change, no event
    await new Promise((r) => servers.pop()!.close(r));
    expect((await scanner.scan()).find((p) => p.port === port)).toBeUndefined(); // one miss: not yet
    expect((await scanner.scan()).find((p) => p.port === port)).toMatchObject({ port, state: "closed" });
    expect(seen.filter((p) => p.port === port).map((p) => p.state)).toEqual(["open", "closed"]);
  });

  it("ignores listeners outside the port range, excluded ports, and other owners", async () => {
    const port = await listen();
    const none = (owner: ConstructorParameters<typeof PreviewScanner>[0]["owner"], extra = {}) =>
      new PreviewScanner({ owner, publish: () => {}, ...extra })
        .scan()
        .then((c) => c.filter((p) => p.port === port));
    expect(await none({ ancestors: () => [process.pid] }, { portRange: { min: 1, max: 1023 } })).toEqual([]);
    expect(await none({ ancestors: () => [process.pid] }, { excludePorts: [port] })).toEqual([]);
    expect(await none({ uid: 54321 })).toEqual([]);
    expect(await none({ ancestors: () => [999_999_999] })).toEqual([]);
  });

  it.skipIf(spawnSync("python3", ["--version"]).status !== 0)(
    "recognises a python http.server child by its command line (needs python3)",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "berth-py-"));
      const child = spawn("python3", ["-m", "http.server", "0", "--bind", "127.0.0.1"], {
        cwd: dir,
        stdio: "pipe",
      });
      children.push(child);
      const scanner = new PreviewScanner({ owner: { ancestors: () => [process.pid] }, publish: () => {} });
      const found = await waitUntil(
        async () => (await scanner.scan()).find((p) => p.pid === child.pid),
        "the python server's listening socket",
      );
      expect(found).toMatchObject({
        framework: "python-http.server",
        protocol: "http",
        process: "python3 -m http.server",
      });
    },
  );

  it("works on a fixture /proc, attributing sockets through fd links", async () => {
    const root = mkdtempSync(join(tmpdir(), "berth-proc-"));
    mkdirSync(join(root, "net"));
    writeFileSync(join(root, "net", "tcp"), TCP);
    writeFileSync(join(root, "net", "tcp6"), TCP6);
    const proc = (pid: number, ppid: number, argv: string[], inodes: number[]) => {
      mkdirSync(join(root, String(pid), "fd"), { recursive: true });
      writeFileSync(join(root, String(pid), "stat"), `${pid} (x (y)) S ${ppid} 1 1 0`);
      writeFileSync(join(root, String(pid), "cmdline"), `${argv.join("\0")}\0`);
      for (const [i, ino] of inodes.entries()) {
        spawnSync("ln", ["-s", `socket:[${ino}]`, join(root, String(pid), "fd", String(i + 3))]);
      }
    };
    proc(100, 1, ["tmux"], []);
    proc(200, 100, ["node", "/w/node_modules/.bin/vite"], [51234, 41235]);
    proc(300, 1, ["postgres"], [41234]);
    const changes = await new PreviewScanner({
      procRoot: root,
      owner: { ancestors: () => [100] },
      publish: () => {},
    }).scan();
    expect(changes).toEqual([
      {
        port: 3000,
        protocol: "http",
        address: "0.0.0.0",
        state: "open",
        process: "node vite",
        pid: 200,
        framework: "vite",
      },
    ]);
  });
});
