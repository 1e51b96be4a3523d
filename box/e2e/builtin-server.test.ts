import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { measureEchoRoundTrip } from "../bench/terminal.ts";
import { startBuiltinTerminalServer } from "../terminal/builtin-server.ts";
import { TtydClient } from "../terminal/client.ts";
import type { TerminalEndpoint } from "../terminal/endpoint-types.ts";
import { basicAuthHeader, encodeCredential } from "../terminal/protocol.ts";
import { upgradeHalfOpen } from "../testing/half-open-upgrade.ts";
import { registerTerminalConformanceSuite } from "../testing/terminal-conformance.ts";
import { makeTestTmux, type TestTmux, TMUX_MISSING } from "../testing/tmux.ts";
import { waitUntil } from "../testing/wait.ts";

registerTerminalConformanceSuite({
  name: "built-in server",
  start: (ctx) =>
    startBuiltinTerminalServer({
      credential: ctx.credential,
      tmux: ctx.tmux,
      cwd: ctx.cwd,
      host: "127.0.0.1",
    }),
});

function get(port: number, path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe.skipIf(TMUX_MISSING)(
  `built-in terminal server specifics${TMUX_MISSING ? ` (skipped: ${TMUX_MISSING})` : ""}`,
  () => {
    let t: TestTmux;
    let endpoint: TerminalEndpoint;
    const credential = "berth:s3cret-value";
    const attached: string[] = [];
    const flow: { session: string; paused: boolean; byBackpressure: boolean }[] = [];

    beforeAll(async () => {
      t = makeTestTmux("berth-term-");
      endpoint = await startBuiltinTerminalServer({
        credential,
        tmux: { socket: t.socket, configFile: t.sessions.tmux.options.configFile },
        cwd: t.cwd,
        onAttach: async (name) => {
          attached.push(name);
          await t.sessions.ensure(name);
        },
        // Tiny watermarks so bulk output exercises pausing and resuming the pty.
        highWaterMark: 2048,
        lowWaterMark: 512,
        onFlowChange: (e) => flow.push(e),
        // No liveness pings here: the backpressure test stops reading its socket on purpose, and a ping
        // queued behind megabytes of output would make it race the ping period. Pings have their own
        // test below, against their own server.
        pingIntervalMs: 0,
      });
    });
    afterAll(async () => {
      await endpoint?.close();
      await t?.cleanup();
    });

    it("refuses to serve without a credential beyond loopback", async () => {
      await expect(
        startBuiltinTerminalServer({ host: "0.0.0.0", tmux: { socket: t.socket } }),
      ).rejects.toThrow(/needs a credential/);
    });

    it("answers health checks without auth and 404 elsewhere", async () => {
      expect(await get(endpoint.port, "/healthz")).toEqual({ status: 200, body: "ok\n" });
      expect((await get(endpoint.port, "/")).status).toBe(404);
      expect((await get(endpoint.port, "/ws")).status).toBe(404);
    });

    it("serves ttyd's /token only with the Basic credential", async () => {
      expect((await get(endpoint.port, "/token")).status).toBe(401);
      const ok = await get(endpoint.port, "/token", { authorization: basicAuthHeader(credential) });
      expect(JSON.parse(ok.body)).toEqual({ token: encodeCredential(credential) });
    });

    it("closes a refused upgrade's socket although the client keeps its own side open", async () => {
      const { socket, answer } = await upgradeHalfOpen(endpoint.port, "/ws");
      expect(answer).toMatch(/^HTTP\/1\.1 401 Unauthorized\r\n/);
      let closed = false;
      socket.once("close", () => {
        closed = true;
      });
      // The server closed the connection, not only its sending side: what the client sends now is reset (seen
      // by the write after the one the reset answers).
      try {
        await waitUntil(() => {
          if (!closed) socket.write("more");
          return closed;
        }, "the client's socket reset");
      } finally {
        socket.destroy();
      }
    });

    it("prepares the session through onAttach, so a first attach gets the three-pane layout", async () => {
      const c = await TtydClient.connect({ url: endpoint.wsUrl, credential, session: "attach-1" });
      c.type("echo layout-$((4+4))\r");
      await c.waitFor("layout-8");
      expect(attached).toContain("attach-1");
      const panes = await t.sessions.panes("attach-1");
      expect(Object.keys(panes).sort()).toEqual(["claude", "logs", "shell"]);
      await c.close();
    });

    it("keeps delivering bulk output through backpressure pauses", async () => {
      const c = await TtydClient.connect({ url: endpoint.wsUrl, credential, session: "bulk-1" });
      c.type("seq 1 30000; echo bulk-$((100*3))-done\r");
      await c.waitFor("bulk-300-done", { timeoutMs: 20_000 });
      expect(c.outputBytes).toBeGreaterThan(2048);
      await c.close();
    });

    it("pauses the pty while the client socket does not drain, and resumes after", async () => {
      // The largest screen: tmux sends a client only redraws, so a big screen of random text is what makes
      // enough bytes to fill the kernel's socket buffers.
      const c = await TtydClient.connect({
        url: endpoint.wsUrl,
        credential,
        session: "slow-1",
        size: { columns: 1000, rows: 1000 },
      });
      c.type("echo slow-$((3*3))\r");
      await c.waitFor("slow-9");
      // A client that stops reading: its TCP window fills and the server's bufferedAmount grows.
      const tcp = (c.ws as unknown as { _socket: import("node:net").Socket })._socket;
      tcp.pause();
      c.type("cat /dev/urandom | base64 -w 990\r"); // endless, so the pause comes whatever the buffer sizes
      await waitUntil(
        () => flow.some((e) => e.session === "slow-1" && e.paused && e.byBackpressure),
        "the pty to be paused by backpressure",
        30_000,
      );
      c.type("\x03"); // input still flows while output is held back
      c.type("echo slow-$((4*4))-end\r");
      tcp.resume();
      await c.waitFor("slow-16-end", { timeoutMs: 30_000 });
      await waitUntil(() => flow.filter((e) => e.session === "slow-1").at(-1)?.paused === false, "resumed");
      await c.close();
    });

    it("drops a client that stops answering pings, and keeps one that answers", async () => {
      const own = await startBuiltinTerminalServer({
        credential,
        tmux: { socket: t.socket, configFile: t.sessions.tmux.options.configFile },
        cwd: t.cwd,
        pingIntervalMs: 300,
      });
      try {
        const mute = new WebSocket(`${own.wsUrl}?arg=ping-1`, ["tty"], {
          headers: { Authorization: basicAuthHeader(credential) },
          autoPong: false,
        });
        const closed = new Promise<number>((r) => mute.on("close", (code) => r(code)));
        const polite = await TtydClient.connect({ url: own.wsUrl, credential, session: "ping-1" });
        expect(await closed).toBe(1006); // terminated without a close frame
        expect(polite.isOpen).toBe(true);
        await polite.close();
      } finally {
        await own.close();
      }
    });

    it("detaches its tmux clients and ends its processes on close", async () => {
      const own = await startBuiltinTerminalServer({
        credential,
        tmux: { socket: t.socket, configFile: t.sessions.tmux.options.configFile },
        cwd: t.cwd,
      });
      const c = await TtydClient.connect({ url: own.wsUrl, credential, session: "close-1" });
      c.type("echo open-$((1+2))\r");
      await c.waitFor("open-3");
      await own.close();
      await c.closed;
      await waitUntil(
        async () =>
          (await t.sessions.tmux.run(["list-clients", "-t", "=close-1"]).catch(() => "gone")).trim() === "",
        "the tmux client to be gone",
      );
      expect(await t.sessions.has("close-1")).toBe(true);
    });

    it("measures keystroke echo round trips", async () => {
      const r = await measureEchoRoundTrip({ wsUrl: endpoint.wsUrl, credential, session: "bench-1" }, 60);
      expect(r.samples).toBe(60);
      expect(r.p50).toBeGreaterThan(0);
      expect(r.p50).toBeLessThanOrEqual(r.p99);
      expect(r.p99).toBeLessThanOrEqual(r.max);
      // The typed letters reached the shell in order: the samples timed real echoes, not stray output.
      const screen = await t.sessions.capture("bench-1");
      expect(screen).toMatch(/bench-40-[0-9a-f]{8}-42/);
    });

    it("keeps keys typed before tmux is attached away from the kernel's line editing", async () => {
      // A session whose shell is at its prompt, so that the key below is for tmux and then the shell.
      await t.sessions.ensure("early-1");
      await waitUntil(
        async () => /bash-[0-9.]+[$#]\s*$/m.test(await t.sessions.capture("early-1")),
        "the shell's prompt",
      );
      // Sent at once, so it reaches the server while the attach starts. Written to the pty before tmux
      // has made it raw, ^C would be the kernel's SIGINT for the tmux client, ending the terminal.
      const c = await TtydClient.connect({ url: endpoint.wsUrl, credential, session: "early-1" });
      c.type("\x03");
      // The shell's answer to ^C. Only then the command: the kernel drops keys queued behind a ^C.
      await c.waitFor("^C");
      c.type("echo early-$((5*5))\r");
      await c.waitFor("early-25");
      expect(c.isOpen).toBe(true);
      await c.close();
    });

    it("closes with 1009 on an oversized message", async () => {
      const c = await TtydClient.connect({ url: endpoint.wsUrl, credential, session: "big-1" });
      c.type("echo big-$((2*2))\r");
      await c.waitFor("big-4");
      c.type("x".repeat(2 * 1024 * 1024));
      expect((await c.closed).code).toBe(1009);
    });

    it("never puts the credential in close reasons or errors", async () => {
      const c = await TtydClient.connect({
        url: endpoint.wsUrl,
        credential,
        session: "leak-1",
        authToken: encodeCredential("berth:wrong"),
      });
      const info = await c.closed;
      expect(info.reason).not.toContain(encodeCredential(credential));
      expect(info.reason).not.toContain("s3cret");
    });
  },
);
