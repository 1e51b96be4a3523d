/**
 * The conformance suite every ttyd-compatible endpoint must pass (the built-in server, a real ttyd, and
 * later the control plane's relay in front of either). Call `registerTerminalConformanceSuite` from a
 * `*.test.ts` file; it registers vitest tests that start the endpoint against a private tmux server.
 *
 * "Refused" means the handshake fails or the socket is closed before a terminal is attached. ttyd refuses
 * some things at the handshake (Basic credential) and others by closing (AuthToken, first message), and
 * the built-in server refuses more at the handshake; both are accepted, and in every case the suite checks
 * that nothing ran: no tmux session, no marker file.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { TtydClient, TtydConnectError, type TtydConnectOptions } from "../terminal/client.ts";
import type { TerminalEndpoint } from "../terminal/endpoint-types.ts";
import { CLOSE_POLICY_VIOLATION, encodeCredential, ServerCommand } from "../terminal/protocol.ts";
import type { TmuxSessions } from "../tmux/sessions.ts";
import type { TmuxServerOptions } from "../tmux/tmux-command.ts";
import { makeTestTmux, type TestTmux, TMUX_MISSING } from "./tmux.ts";
import { waitUntil } from "./wait.ts";

export interface ConformanceContext {
  /** `user:password` the endpoint must require. */
  credential: string;
  /** The private tmux server the endpoint must attach to. */
  tmux: Pick<TmuxServerOptions, "socket" | "configFile" | "env">;
  /** Working directory for the attach process. */
  cwd: string;
  /** A session manager on that server, for endpoints that prepare sessions before attaching. */
  sessions: TmuxSessions;
}

export interface ConformanceOptions {
  name: string;
  start(ctx: ConformanceContext): Promise<TerminalEndpoint>;
  /** A reason to skip the whole suite (e.g. the binary is missing), or false to run it. */
  skip?: string | false;
  /**
   * Known, explained departures of this endpoint from the protocol. Each named check is registered as
   * skipped with the reason in its title, so a deviation stays visible in every test run.
   */
  deviations?: { pause?: string };
}

/**
 * A WebSocket ping and its pong: an endpoint handles a socket's frames in order, so once the pong is back it
 * has read everything the client sent before the ping, and sent whatever that made it send. Also resolves
 * when the socket closes instead.
 */
export function pingPong(client: TtydClient): Promise<void> {
  return new Promise((resolve) => {
    if (!client.isOpen) return resolve();
    client.ws.once("pong", () => resolve());
    void client.closed.then(() => resolve());
    client.ws.ping();
  });
}

export function registerTerminalConformanceSuite(opts: ConformanceOptions): void {
  const skip = opts.skip || TMUX_MISSING;
  const suite = skip ? describe.skip : describe;
  suite(`ttyd protocol conformance: ${opts.name}${skip ? ` (skipped: ${skip})` : ""}`, () => {
    let t: TestTmux;
    let endpoint: TerminalEndpoint;
    const credential = `berth:${randomBytes(12).toString("hex")}`;
    const clients: TtydClient[] = [];

    beforeAll(async () => {
      t = makeTestTmux("berth-conf-");
      endpoint = await opts.start({
        credential,
        tmux: { socket: t.socket, configFile: join(t.dir, "tmux.conf") },
        cwd: t.cwd,
        sessions: t.sessions,
      });
    });
    afterEach(async () => {
      await Promise.all(clients.splice(0).map((c) => c.close()));
    });
    afterAll(async () => {
      await endpoint?.close();
      await t?.cleanup();
    });

    const connect = async (extra: Partial<TtydConnectOptions> = {}) => {
      const client = await TtydClient.connect({ url: endpoint.wsUrl, credential, ...extra });
      clients.push(client);
      return client;
    };
    const sessionNames = async () => (await t.sessions.list()).map((s) => s.name);
    const clientSizes = async (session: string) =>
      t.sessions.tmux
        .run(["list-clients", "-t", `=${session}`, "-F", "#{client_width}x#{client_height}"])
        .catch(() => "");
    const paneText = (session: string) =>
      // A pane target needs the trailing colon: `=name` alone is not found as a pane on tmux 3.3a.
      t.sessions.tmux.run(["capture-pane", "-p", "-J", "-t", `=${session}:`]).catch(() => "");

    /** Connects and returns how the endpoint refused; fails if a terminal got attached. */
    async function expectRefused(
      options: Partial<TtydConnectOptions>,
      afterOpen: (c: TtydClient) => void = () => {},
      allowOutput = false,
    ): Promise<"handshake" | "closed"> {
      let client: TtydClient;
      try {
        client = await connect(options);
      } catch (err) {
        expect(err).toBeInstanceOf(TtydConnectError);
        return "handshake";
      }
      afterOpen(client);
      const close = await Promise.race([
        client.closed,
        new Promise<null>((r) => setTimeout(() => r(null), 30_000)),
      ]);
      expect(close, "the endpoint kept a refused socket open").not.toBeNull();
      if (!allowOutput) expect(client.outputBytes).toBe(0);
      return "closed";
    }

    it("refuses a socket without the tty subprotocol", async () => {
      const session = "conf-noproto";
      let client: TtydClient | null = null;
      try {
        client = await connect({ session, protocols: [] });
      } catch (err) {
        expect(err).toBeInstanceOf(TtydConnectError);
      }
      if (client) {
        // ttyd opens such a socket on its http-only protocol and never attaches anything to it. Once it has
        // answered a ping sent after the input, it has read the input and done all it will do with it.
        client.type("echo should-not-run\r");
        await pingPong(client);
        expect(client.messages).toEqual([]);
      }
      expect(await sessionNames()).not.toContain(session);
    });

    it("refuses a missing Basic credential", async () => {
      const how = await expectRefused({ session: "conf-nobasic", basicCredential: null });
      expect(how).toBe("handshake");
      expect(await sessionNames()).not.toContain("conf-nobasic");
    });

    it("refuses a wrong Basic credential", async () => {
      const how = await expectRefused({ session: "conf-badbasic", basicCredential: "berth:wrong" });
      expect(how).toBe("handshake");
      expect(await sessionNames()).not.toContain("conf-badbasic");
    });

    it("closes when the init AuthToken is wrong, with 1008 when a close frame is sent", async () => {
      let code = 0;
      const how = await expectRefused(
        { session: "conf-badtoken", authToken: encodeCredential("berth:wrong") },
        (c) => void c.closed.then((info) => (code = info.code)),
      );
      expect(how).toBe("closed");
      expect([CLOSE_POLICY_VIOLATION, 1006]).toContain(code);
      expect(await sessionNames()).not.toContain("conf-badtoken");
    });

    it("closes when the init has no AuthToken", async () => {
      await expectRefused({ session: "conf-notoken", authToken: "" });
      expect(await sessionNames()).not.toContain("conf-notoken");
    });

    it("closes when the first message is not the JSON init", async () => {
      await expectRefused({ session: "conf-notjson", sendInit: false }, (c) => c.sendRaw("hello"));
      expect(await sessionNames()).not.toContain("conf-notjson");
    });

    it("refuses INPUT sent before the init", async () => {
      const marker = join(t.dir, "input-before-init");
      await expectRefused({ session: "conf-early", sendInit: false }, (c) => c.type(`touch ${marker}\r`));
      expect(existsSync(marker)).toBe(false);
      expect(await sessionNames()).not.toContain("conf-early");
    });

    const hostile = (marker: string) => [
      `arg=${encodeURIComponent(`x#(touch ${marker})`)}`,
      `arg=${encodeURIComponent("../")}`,
      "arg=UPPER",
      `arg=${"a".repeat(33)}`,
      "arg=a+b",
      "arg=",
      "arg=conf-one&arg=conf-two",
      "",
    ];
    it("rejects hostile or malformed ?arg= values without running anything", async () => {
      const marker = join(t.dir, "pwned");
      const before = await sessionNames();
      // ttyd spawns its command before judging the arg, so its guard's one-line error may be shown.
      for (const query of hostile(marker)) await expectRefused({ query }, undefined, true);
      expect(existsSync(marker)).toBe(false);
      expect(await sessionNames()).toEqual(before);
    });

    it("round-trips input and output, after the title and preferences", async () => {
      const c = await connect({ session: "conf-echo" });
      c.type("echo hi-$((6*7))\r");
      await c.waitFor("hi-42");
      expect(c.messages[0]?.command).toBe(ServerCommand.SET_WINDOW_TITLE);
      expect(c.messages[1]?.command).toBe(ServerCommand.SET_PREFERENCES);
      expect(c.messages[2]?.command).toBe(ServerCommand.OUTPUT);
      expect(c.title).toMatch(/\(.+\)$/);
      expect(typeof c.preferences).toBe("object");
      expect(await sessionNames()).toContain("conf-echo");
    });

    it("applies the init size and RESIZE_TERMINAL to the tmux client", async () => {
      const c = await connect({ session: "conf-resize", size: { columns: 90, rows: 28 } });
      await waitUntil(async () => (await clientSizes("conf-resize")).includes("90x28"), "the init size");
      c.resize({ columns: 120, rows: 33 });
      await waitUntil(
        async () => (await clientSizes("conf-resize")).includes("120x33"),
        "the resized client",
      );
      // tmux resizes the window after the client, on its next loop; stty before that reads the old size.
      const paneWidth = () =>
        t.sessions.tmux
          .run(["display-message", "-p", "-t", "=conf-resize:", "#{pane_width}"])
          .catch(() => "");
      await waitUntil(async () => (await paneWidth()).trim() === "120", "the pane to follow the client size");
      // The pane is the client minus tmux's status line; tmux may draw spaces as cursor moves, hence `tr`.
      c.type("stty size | tr ' ' x\r");
      await c.waitFor(/3[23]x120/);
    });

    const pauseTest = opts.deviations?.pause ? it.skip : it;
    const pauseTitle = `stops output on PAUSE and delivers it on RESUME${
      opts.deviations?.pause ? ` (deviation: ${opts.deviations.pause})` : ""
    }`;
    pauseTest(pauseTitle, async () => {
      const c = await connect({ session: "conf-pause" });
      // A second client of the same session that never pauses: it sees the same screen at the same time.
      const witness = await connect({ session: "conf-pause" });
      c.type("echo ready-$((1+1))\r");
      await c.waitFor("ready-2");
      await witness.waitFor("ready-2");
      c.pause();
      await pingPong(c); // the endpoint has read the PAUSE
      const since = c.mark();
      c.type("echo paused-$((2+3))\r");
      // The command ran (tmux has it on screen) while the paused client received none of it. tmux drew it for
      // both clients at once; the witness got it through the same endpoint, and the endpoint has served the
      // paused client's socket since (the ping), so output it had not held back would be there by now.
      await waitUntil(async () => (await paneText("conf-pause")).includes("paused-5"), "the pane output");
      await witness.waitFor("paused-5");
      await pingPong(c);
      expect(c.text.slice(since)).not.toContain("paused-5");
      c.resume();
      await c.waitFor("paused-5", { since });
    });

    it("shows two clients of one session the same screen", async () => {
      const a = await connect({ session: "conf-shared" });
      const b = await connect({ session: "conf-shared" });
      await waitUntil(
        async () => (await clientSizes("conf-shared")).split("\n").filter(Boolean).length === 2,
        "two clients",
      );
      a.type("echo shared-$((7*6))\r");
      await a.waitFor("shared-42");
      await b.waitFor("shared-42");
    });

    it("shows the previous screen after a disconnect and reattach", async () => {
      const a = await connect({ session: "conf-reattach" });
      a.type("echo persisted-$((9*9))\r");
      await a.waitFor("persisted-81");
      a.terminate(); // a dropped network connection, not a polite close
      await waitUntil(async () => (await clientSizes("conf-reattach")) === "", "the tmux client to detach");
      expect(await sessionNames()).toContain("conf-reattach");
      const b = await connect({ session: "conf-reattach" });
      await b.waitFor("persisted-81");
    });

    it("closes the socket when the terminal process exits", async () => {
      const c = await connect({ session: "conf-exit" });
      c.type("echo up-$((2*2))\r");
      await c.waitFor("up-4");
      await t.sessions.tmux.run(["kill-session", "-t", "=conf-exit"]);
      const info = await Promise.race([
        c.closed,
        new Promise<null>((r) => setTimeout(() => r(null), 30_000)),
      ]);
      expect(info, "socket still open after the process exited").not.toBeNull();
    });
  });
}
