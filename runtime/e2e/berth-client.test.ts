/**
 * The `berth` client as a user runs it (a child process, its own config dir) against a real local control
 * plane with real box agents and tmux: login, create with the streamed log, list --json, hibernate, wake,
 * rm, a refused token; and `attach` inside a real pty (node-pty), its screen read through a headless xterm.
 * The client reaches the control plane through a TCP proxy the test can cut, to drop its connection.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawn as spawnPty } from "@lydell/node-pty";
import xterm from "@xterm/headless";
import { describe, expect, it } from "vitest";
import { startDevServerInWorkspace, startLocalControlPlane } from "../test/local-control-plane.ts";
import { waitFor } from "../test/wait.ts";

const ESCAPES =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escape sequences are what is stripped
  /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[@-Z\\-_=>]/g;
const CLIENT = fileURLToPath(new URL("../app/client/main.ts", import.meta.url));

/** A loopback TCP proxy whose open connections the test can cut. */
async function cuttableProxy(upstreamPort: number, listenPort: number) {
  const open = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(upstreamPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      open.add(s);
      s.on("close", () => open.delete(s));
      s.on("error", () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listenPort, "127.0.0.1", resolve);
  });
  return {
    port: listenPort,
    /** Drops every connection at once, like a network that went away; new connections still work. */
    cut: () => {
      for (const s of open) s.destroy();
    },
    close: () => server.close(),
  };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe("the berth client against a local control plane", { timeout: 240_000 }, async () => {
  // The proxy's port must be an allowed origin for the terminal relay before the control plane starts.
  const placeholder = createServer();
  await new Promise<void>((r) => placeholder.listen(0, "127.0.0.1", r));
  const proxyPort = (placeholder.address() as AddressInfo).port;
  placeholder.close();
  const cp = await startLocalControlPlane({
    BERTH_WEB_ORIGINS: `http://127.0.0.1:${proxyPort}`,
    BERTH_PREVIEW_DOMAIN: "preview.localhost",
  });
  const cpPort = Number(new URL(cp.url).port);
  const proxy = await cuttableProxy(cpPort, proxyPort);
  const url = `http://127.0.0.1:${proxy.port}`;
  const config = mkdtempSync(join(tmpdir(), "berth-client-"));
  const env = { ...process.env, XDG_CONFIG_HOME: config, BERTH_TOKEN: "" };

  const berth = (args: string[], extraEnv: Record<string, string> = {}, stdin = ""): Promise<Run> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [CLIENT, ...args], { env: { ...env, ...extraEnv } });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(stdin);
    });
  const noToken = (r: Run) => {
    expect(r.stdout).not.toContain(cp.localToken);
    expect(r.stderr).not.toContain(cp.localToken);
  };

  it("refuses a wrong token with a clear message and exit 3, and stores nothing", async () => {
    const r = await berth(["login", url], {}, "not-the-token\n");
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/refused the token \(token_invalid/);
    expect(() => statSync(join(config, "berth", "credentials.json"))).toThrow();
    expect((await berth(["ws", "list"])).code).toBe(3);
  });

  it("logs in with the token on stdin into a 0600 file, never printing it", async () => {
    const r = await berth(["login", url], {}, `${cp.localToken}\n`);
    expect(r.code).toBe(0);
    noToken(r);
    const file = join(config, "berth", "credentials.json");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(config, "berth")).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({ url, token: cp.localToken });
  });

  let workspaceId = "";

  it("creates a workspace, streaming its build log, and lists it as JSON", async () => {
    const created = await berth(["ws", "create", "cli-box"]);
    expect(created.code, created.stderr).toBe(0);
    noToken(created);
    // The build's stages and lines, as they were written, then the outcome.
    expect(created.stdout).toMatch(/==> /);
    expect(created.stderr).toContain("cli-box: done");

    const list = await berth(["ws", "list", "--json"]);
    expect(list.code).toBe(0);
    const workspaces = JSON.parse(list.stdout);
    expect(workspaces).toEqual([expect.objectContaining({ name: "cli-box", state: "ready" })]);
    workspaceId = workspaces[0].id;
    const table = await berth(["ws", "list"]);
    expect(table.stdout).toMatch(/^NAME\s+STATE\s+ID/);
    expect(table.stdout).toContain(workspaceId);
    expect((await berth(["ws", "list", "--names"])).stdout).toBe("cli-box\n");
  });

  it("says what is wrong, with documented exit codes", async () => {
    const missing = await berth(["ws", "wake", "no-such-box"]);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain("no workspace 'no-such-box'");
    expect((await berth(["ws", "bogus"])).code).toBe(2);
    expect((await berth(["ws", "rm", "cli-box"])).code).toBe(2); // without --yes
    const unreachable = await spawnClientWith(["ws", "list"], "http://127.0.0.1:1");
    expect(unreachable.code).toBe(6);
    for (const command of ["login", "logout", "ws", "attach", "preview", "completion"]) {
      const help = await berth([command, "--help"]);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/^Usage: berth /);
    }
  });

  /** `berth <args>` in a real pty (node-pty), its screen kept by a headless xterm. */
  function attachInPty(args: string[]) {
    const term = new xterm.Terminal({ cols: 100, rows: 30, allowProposedApi: true });
    const pty = spawnPty(process.execPath, [CLIENT, ...args], {
      name: "xterm-256color",
      cols: 100,
      rows: 30,
      env: { ...env, TERM: "xterm-256color" } as Record<string, string>,
    });
    let exitCode: number | null = null;
    let raw = "";
    pty.onData((d) => {
      raw += d;
      term.write(d);
    });
    pty.onExit((e) => {
      exitCode = e.exitCode;
    });
    const screen = () => {
      const lines: string[] = [];
      for (let i = 0; i < term.buffer.active.length; i++) {
        lines.push(term.buffer.active.getLine(i)?.translateToString(true) ?? "");
      }
      return lines.join("\n");
    };
    /**
     * Resizes the terminal: the pty (the client sees SIGWINCH) and the screen model with it. A screen model
     * left at the old size clamps tmux's cursor moves for the new one, so lines drawn below its last row
     * overwrite each other there and the status line wraps and scrolls everything up: output the client
     * delivered intact went missing from the "screen" (the old dropped-connection flake).
     */
    const resize = (cols: number, rows: number) => {
      term.resize(cols, rows);
      pty.resize(cols, rows);
    };
    return { pty, screen, resize, output: () => raw, exited: () => exitCode };
  }

  /** The client with credentials for another URL, in a config dir of its own. */
  async function spawnClientWith(args: string[], otherUrl: string): Promise<Run> {
    const dir = mkdtempSync(join(tmpdir(), "berth-client-"));
    const { writeCredentials } = await import("../app/client/credentials.ts");
    writeCredentials({ url: otherUrl, token: "x" }, { XDG_CONFIG_HOME: dir });
    return berth(args, { XDG_CONFIG_HOME: dir });
  }

  it("prints bash and zsh completion that complete commands and workspace names", async () => {
    const bash = await berth(["completion", "bash"]);
    expect(bash.code).toBe(0);
    execFileSync("bash", ["-n"], { input: bash.stdout });
    expect(bash.stdout).toContain("complete -F _berth berth");
    const zsh = await berth(["completion", "zsh"]);
    expect(zsh.stdout).toContain("compdef _berth berth");
  });

  it("attaches in a real terminal: input, output, resize, a dropped connection, detach", async () => {
    const { pty, screen, resize, exited, output } = attachInPty(["attach", "cli-box", "main"]);
    const raw = output;
    const tmuxSocket = () => cp.agentState(workspaceId)!.tmuxSocket;
    const tmux = (...args: string[]) =>
      execFileSync("tmux", ["-S", tmuxSocket(), ...args], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      });
    try {
      // Typed input reaches tmux; the shell's output comes back (computed, so it cannot be the echo).
      await waitFor("tmux to have a client", () =>
        tmux("list-clients", "-F", "#{session_name}").includes("main"),
      );
      pty.write("echo marker-$((6*7))\r");
      await waitFor("the output on the screen", () => screen().includes("marker-42"));

      // A resize of the user's terminal (SIGWINCH) reaches tmux.
      resize(120, 40);
      await waitFor(
        "tmux to see 120x40",
        () => tmux("list-clients", "-F", "#{client_width}x#{client_height}").trim() === "120x40",
      );

      // The connection drops; the client says so, reconnects, and tmux sends the screen as it was again.
      // (Only what follows the client's note counts: output already on its way when the cut came may
      // arrive after it, and keys typed before the client noticed the drop would go down the dead socket.)
      const sinceCut = raw().length;
      proxy.cut();
      await waitFor(
        "the screen to be sent again after the drop",
        () => {
          const after = raw().slice(sinceCut);
          const note = after.indexOf("connection lost");
          return note >= 0 && after.slice(note).replace(ESCAPES, "").includes("marker-42");
        },
        60_000,
      );
      // Keys typed now reach the shell through the new connection, and its output comes back.
      pty.write("echo again-$((7*7))\r");
      await waitFor("input after the reconnect", () => screen().includes("again-49"));

      // Ctrl-] d detaches: the client exits 0, the session keeps running on the box.
      pty.write("\x1d");
      pty.write("d");
      await waitFor("the client to exit", () => exited() !== null);
      expect(exited()).toBe(0);
      expect(tmux("list-sessions", "-F", "#{session_name}").split("\n")).toContain("main");
      await waitFor(
        "tmux to have no client",
        () => !tmux("list-clients", "-F", "#{session_name}").includes("main"),
      );
    } finally {
      if (exited() === null) pty.kill();
    }
  });

  it("lists, opens and shares a workspace's previews", async () => {
    const { port, preview } = await startDevServerInWorkspace(cp, workspaceId);
    const list = await berth(["preview", "list", "cli-box", "--json"]);
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual(
      expect.arrayContaining([expect.objectContaining({ id: preview.id, port, source: "detected" })]),
    );
    expect((await berth(["preview", "list", "cli-box"])).stdout).toMatch(
      new RegExp(`^${port}\\s+detected`, "m"),
    );

    // A sign-in URL on the preview's own host, valid once: it must open the dev server's page.
    const open = await berth(["preview", "open", "cli-box", String(port), "--print"]);
    expect(open.code, open.stderr).toBe(0);
    const signIn = new URL(open.stdout.trim());
    expect(signIn.hostname).toBe(`${preview.id}.preview.localhost`);
    expect(signIn.pathname).toBe("/__berth/auth");

    const share = await berth(["preview", "share", "cli-box", String(port), "--ttl", "600", "--json"]);
    expect(share.code, share.stderr).toBe(0);
    const link = JSON.parse(share.stdout);
    expect(link.url).toContain("/__berth/link?t=");
    expect(Date.parse(link.expiresAt) - Date.now()).toBeLessThanOrEqual(600_000);

    const missing = await berth(["preview", "open", "cli-box", "1"]);
    expect(missing.code).toBe(4);
  });

  it("hibernates, wakes and removes the workspace, following each build", async () => {
    const hib = await berth(["ws", "hibernate", "cli-box", "--json"]);
    expect(hib.code, hib.stderr).toBe(0);
    expect(JSON.parse(hib.stdout)).toMatchObject({ build: { status: "succeeded" } });
    expect(
      (JSON.parse((await berth(["ws", "list", "--json"])).stdout) as { state: string }[])[0]!.state,
    ).toBe("hibernated");
    // Attaching to a sleeping box without a terminal to ask on: refused, exit 5, nothing woken.
    const asleep = await berth(["attach", "cli-box"]);
    expect(asleep.code).toBe(5);
    expect(asleep.stderr).toContain("hibernated");

    const wake = await berth(["ws", "wake", "cli-box"]);
    expect(wake.code, wake.stderr).toBe(0);
    expect(wake.stdout).toMatch(/==> /);

    // In a terminal, attach offers to wake a hibernated workspace, follows the build, then attaches.
    expect((await berth(["ws", "hibernate", "cli-box"])).code).toBe(0);
    const { pty, screen, exited } = attachInPty(["attach", "cli-box", "main"]);
    try {
      await waitFor("the wake offer", () => screen().includes("is hibernated. Wake it? [Y/n]"), 60_000);
      pty.write("\r");
      await waitFor("tmux's status line after the wake", () => screen().includes("[main]"), 120_000);
      pty.write("\x1dd");
      await waitFor("the client to exit", () => exited() !== null);
      expect(exited()).toBe(0);
    } finally {
      if (exited() === null) pty.kill();
    }
    const rm = await berth(["ws", "rm", "cli-box", "--yes", "--json"]);
    expect(rm.code, rm.stderr).toBe(0);
    expect(JSON.parse(rm.stdout)).toMatchObject({ build: { status: "succeeded" } });
  });

  it("logs out, removing the token", async () => {
    const out = await berth(["logout"]);
    expect(out.code).toBe(0);
    expect(() => statSync(join(config, "berth", "credentials.json"))).toThrow();
    expect((await berth(["ws", "list"])).code).toBe(3);
    proxy.close();
  });
});
