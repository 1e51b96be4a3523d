/**
 * `berth attach`'s keystroke echo, for `npm run bench -- client-attach`: the client CLI in a real pty
 * (node-pty), typing one character at a time and timing until its echo comes back on the pty, against the
 * web client's path measured in the same run: a WebSocket straight through the relay (what the browser's
 * terminal does). Same box, tmux, shell and control plane for both; interleaved, so drift hits both alike.
 * The difference is the client's own cost: a pty, raw mode, and one more process. Nothing asserts.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawn as spawnPty } from "@lydell/node-pty";
import { echoTimes, summarizeEcho } from "../../box/bench/terminal.ts";
import { TtydClient } from "../../box/terminal/client.ts";
import { writeCredentials } from "../app/client/credentials.ts";
import { TOKEN_PROTOCOL_PREFIX } from "../gateway/terminal/gateway.ts";
import { mintTerminalToken } from "../test/terminal.ts";
import { spawnBenchControlPlane } from "./control-plane-main.ts";
import { type BenchPostgres, benchLocalDriver, destroyBenchBoxes, fmt, table } from "./harness.ts";

const CLIENT = fileURLToPath(new URL("../app/client/main.ts", import.meta.url));
const BENCH_TOKEN = "bench-token-bench-token-bench-token-bench";

/**
 * `berth attach` in a pty, seen through the same three calls echoTimes uses on a TtydClient (type, mark,
 * waitFor), so both paths are timed by one loop.
 */
async function attachInPty(env: Record<string, string>, workspace: string, session: string) {
  const pty = spawnPty(process.execPath, [CLIENT, "attach", workspace, session], {
    name: "xterm-256color",
    cols: 200,
    rows: 50,
    env: { ...process.env, ...env, TERM: "xterm-256color" } as Record<string, string>,
  });
  let text = "";
  const waiters = new Set<() => void>();
  pty.onData((d) => {
    text += d;
    for (const w of waiters) w();
  });
  const client = {
    type: (s: string) => pty.write(s),
    mark: () => text.length,
    waitFor: (predicate: (output: string) => boolean, opts: { since?: number } = {}) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(`timed out waiting for the attach client's output; it shows:\n${text.slice(-2000)}`),
          );
        }, 30_000);
        const check = () => {
          if (!predicate(text.slice(opts.since ?? 0))) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
        check();
      }),
  };
  const detach = async () => {
    const exited = new Promise<void>((r) => pty.onExit(() => r()));
    pty.write("\x1d");
    pty.write("d");
    await exited;
  };
  // Attached once tmux has drawn its status line, which names the session.
  await client.waitFor((output) => output.includes(`[${session}]`));
  return { client: client as unknown as TtydClient, detach };
}

export async function benchClientAttach(pgs: BenchPostgres): Promise<void> {
  const { root, driver } = benchLocalDriver("attach");
  const databaseUrl = await pgs.database("client_attach");
  const cp = await spawnBenchControlPlane({
    databaseUrl,
    env: { BERTH_LOCAL_TOKEN: BENCH_TOKEN },
    localRoot: root,
    options: {
      agentHeartbeatSeconds: 1,
      terminal: {
        socketRateLimit: { points: 10_000, durationSeconds: 60 },
        mintRateLimit: { points: 10_000, durationSeconds: 60 },
      },
    },
  });
  const cpUrl = cp.ready.url;
  const config = mkdtempSync(join(tmpdir(), "berth-bench-client-"));
  try {
    const api = async (path: string, init: RequestInit = {}) => {
      const res = await fetch(`${cpUrl}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${BENCH_TOKEN}`, "content-type": "application/json" },
      });
      if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
      // biome-ignore lint/suspicious/noExplicitAny: bench setup reads a few known fields
      return (await res.json()) as any;
    };
    const { workspace } = await api("/api/v1/workspaces", {
      method: "POST",
      body: JSON.stringify({ name: "bench-attach" }),
    });
    while ((await api(`/api/v1/workspaces/${workspace.id}`)).workspace.state !== "ready") {
      await new Promise((r) => setTimeout(r, 100));
    }
    const { session } = await api(`/api/v1/workspaces/${workspace.id}/sessions`, {
      method: "POST",
      body: JSON.stringify({ name: "bench" }),
    });
    writeCredentials({ url: cpUrl, token: BENCH_TOKEN }, { XDG_CONFIG_HOME: config });

    const web = async () =>
      TtydClient.connect({
        url: `${cpUrl.replace(/^http/, "ws")}/api/v1/sessions/${session.id}/terminal`,
        protocols: [
          "tty",
          `${TOKEN_PROTOCOL_PREFIX}${(await mintTerminalToken(cpUrl, session.id, BENCH_TOKEN)).token}`,
        ],
        headers: { Origin: new URL(cpUrl).origin },
        authToken: "",
        size: { columns: 200, rows: 50 },
      });
    const measureWeb = async (n: number) => {
      const client = await web();
      try {
        return await echoTimes(client, n);
      } finally {
        await client.close();
      }
    };
    const measureCli = async (n: number) => {
      const { client, detach } = await attachInPty({ XDG_CONFIG_HOME: config }, "bench-attach", "bench");
      try {
        return await echoTimes(client, n);
      } finally {
        await detach();
      }
    };

    const n = 200;
    const paths = [
      {
        label: "web client's path: WebSocket through the relay (baseline)",
        run: measureWeb,
        times: [] as number[],
      },
      { label: "berth attach in a pty, through the relay", run: measureCli, times: [] as number[] },
    ];
    for (const p of paths) await p.run(20); // warm up tmux, the shell and both paths
    for (const p of [...paths, ...paths.toReversed()]) p.times.push(...(await p.run(n / 2)));
    const base = summarizeEcho(paths[0]!.times);
    table(
      `berth attach keystroke echo (${n} keystrokes per path, interleaved; tmux + shell on a local box)`,
      ["path", "p50 ms", "p99 ms", "p50 vs web", "p99 vs web"],
      paths.map((p) => {
        const e = summarizeEcho(p.times);
        return [
          p.label,
          fmt(e.p50, 3),
          fmt(e.p99, 3),
          `${fmt(e.p50 / base.p50, 2)}x`,
          `${fmt(e.p99 / base.p99, 2)}x`,
        ];
      }),
    );
  } finally {
    await destroyBenchBoxes(driver, root, cpUrl);
    await cp.stop();
    rmSync(root, { recursive: true, force: true });
    rmSync(config, { recursive: true, force: true });
  }
}
