/**
 * The terminal relay end to end on this machine: browser-side client → control plane (token, Origin,
 * ownership, caps) → the box agent's ttyd-protocol endpoint → real tmux, on real Postgres. Every refusal
 * is checked to happen before the relay opens any upstream connection: the upstream connect function is
 * wrapped and every URL it is asked for is recorded.
 */
import { execFileSync } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import xterm from "@xterm/headless";
import { describe, expect, it } from "vitest";
import { type TtydClient, TtydConnectError } from "../../box/terminal/client.ts";
import { upsertUser } from "../domain/identity/actor.ts";
import { defaultConnectUpstream } from "../gateway/terminal/gateway.ts";
import { SYSTEM } from "../store/actors.ts";
import { terminalTokens } from "../store/schema.ts";
import { json } from "../test/control-plane.ts";
import { startLocalControlPlane } from "../test/local-control-plane.ts";
import { afterEverySend, connectThroughRelay, mintTerminalToken } from "../test/terminal.ts";
import { waitFor } from "../test/wait.ts";

const ESCAPES =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escape sequences are what is stripped
  /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[@-Z\\-_=>]/g;
const { Terminal } = xterm;
const MAX_PER_SESSION = 3;
const HIGH_WATER = 256 * 1024;

describe("terminal relay, end to end through a real box agent and tmux", async () => {
  const upstreamUrls: string[] = [];
  const cp = await startLocalControlPlane(
    {},
    {
      start: {
        terminal: {
          maxSocketsPerSession: MAX_PER_SESSION,
          highWaterMark: HIGH_WATER,
          lowWaterMark: 64 * 1024,
          socketRateLimit: { points: 1000, durationSeconds: 60 },
          mintRateLimit: { points: 1000, durationSeconds: 60 },
          connectUpstream: (url, options) => {
            upstreamUrls.push(url);
            return defaultConnectUpstream(url, options);
          },
        },
      },
    },
  );
  const { pool } = cp.deps.database;
  const gateway = cp.deps.terminal;
  const owner = cp.localToken;

  const created = await cp.api("/api/v1/workspaces", {
    method: "POST",
    token: owner,
    json: { name: "relay" },
  });
  const workspaceId = (await json(created)).workspace.id as string;
  await waitFor(
    "workspace ready",
    async () =>
      (await pool.query("SELECT state FROM workspaces WHERE id = $1", [workspaceId])).rows[0].state ===
      "ready",
    40_000,
  );
  const sessionIds: Record<string, string> = {};
  for (const name of ["main", "second"]) {
    const res = await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, {
      method: "POST",
      token: owner,
      json: { name },
    });
    sessionIds[name] = (await json(res)).session.id;
  }
  const tmuxSocket = cp.agentState(workspaceId)!.tmuxSocket;
  const tmux = (...args: string[]) =>
    execFileSync("tmux", ["-S", tmuxSocket, ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  await waitFor(
    "tmux sessions",
    () => {
      try {
        tmux("has-session", "-t", "=main");
        tmux("has-session", "-t", "=second");
        return true;
      } catch {
        return false;
      }
    },
    30_000,
  );
  const terminalPort = cp.agentState(workspaceId)!.terminalPort;

  const mint = async (session = "main") => {
    const minted = await mintTerminalToken(cp.url, sessionIds[session]!, owner);
    expect(minted.status).toBe(201);
    return minted.token!;
  };
  const open = async (session = "main", extra: Partial<Parameters<typeof connectThroughRelay>[0]> = {}) =>
    connectThroughRelay({
      baseUrl: cp.url,
      sessionId: sessionIds[session]!,
      token: await mint(session),
      ...extra,
    });
  const shown = (client: TtydClient) => client.text.replace(ESCAPES, "");
  const expectEcho = async (client: TtydClient, tag: string) => {
    const since = client.mark();
    client.type(`echo ${tag}-$((6*7))\r`);
    await client
      .waitFor((out) => out.replace(ESCAPES, "").includes(`${tag}-42`), { since })
      .catch((err) => {
        throw new Error(`${err.message}; screen: ${JSON.stringify(shown(client).slice(-400))}`);
      });
  };
  /** Runs `connect`, expects it to be refused, and that no upstream connection was attempted meanwhile. */
  const refusedBeforeUpstream = async (connect: () => Promise<TtydClient>) => {
    const before = upstreamUrls.length;
    let outcome: { status?: number; code?: number; reason?: string };
    try {
      const client = await connect();
      const closed = await client.closed;
      outcome = { code: closed.code, reason: closed.reason };
      expect(client.outputBytes).toBe(0);
    } catch (err) {
      if (!(err instanceof TtydConnectError)) throw err;
      outcome = { status: err.status };
    }
    expect(upstreamUrls.length).toBe(before);
    return outcome;
  };
  const idle = () => waitFor("no relayed sockets", () => gateway.socketCount === 0);

  it("mints a token bound to the session and records session.open in the audit log", async () => {
    const before = Date.now();
    const minted = await mintTerminalToken(cp.url, sessionIds.main!, owner);
    const after = Date.now();
    expect(minted.status).toBe(201);
    expect(minted.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    // A minute from when it was minted (in whole seconds), whenever during the request that was.
    const expiresAt = Date.parse(minted.expiresAt!);
    expect(expiresAt).toBeGreaterThanOrEqual(before - 1_000 + 60_000);
    expect(expiresAt).toBeLessThanOrEqual(after + 60_000);
    expect(minted.body.protocols).toEqual(["tty", `berth.token.${minted.token}`]);
    const audit = await pool.query(
      "SELECT details FROM audit_log WHERE action = 'session.open' AND target_id = $1",
      [sessionIds.main],
    );
    expect(audit.rowCount).toBeGreaterThan(0);
    expect(JSON.stringify(audit.rows)).not.toContain(minted.token);
  });

  it("types through the relay and sees the shell's echo; the upstream URL carries only the validated name", async () => {
    const client = await open("main");
    try {
      await expectEcho(client, "relay-hi");
      expect(upstreamUrls.at(-1)).toBe(`ws://127.0.0.1:${terminalPort}/ws?arg=main`);
      // The box credential never reaches the client, in any form.
      const { rows } = await pool.query("SELECT 1"); // keep the pool warm for the next assertions
      expect(rows).toHaveLength(1);
      const everything = Buffer.concat(client.messages.map((m) => m.body)).toString("latin1");
      const credential = (await import("../store/secrets.ts")).readWorkspaceSecret;
      const secret = (await credential(
        cp.deps.database.db,
        cp.deps.secretBox,
        workspaceId,
        "ttyd-credential",
      ))!;
      expect(everything).not.toContain(secret.split(":")[1]);
      expect(everything).not.toContain(Buffer.from(secret).toString("base64"));
    } finally {
      await client.close();
    }
  });

  it("resizes the tmux client", async () => {
    const client = await open("main", { size: { columns: 100, rows: 30 } });
    try {
      await expectEcho(client, "before-resize");
      client.resize({ columns: 132, rows: 43 });
      await waitFor("resize reaches tmux", () =>
        tmux("list-clients", "-t", "=main", "-F", "#{client_width}x#{client_height}").includes("132x43"),
      );
    } finally {
      await client.close();
    }
  });

  it("reconnects to the same tmux session with the screen restored, and counts the reconnection", async () => {
    const nonce = `keep-${Date.now().toString(36)}`;
    const first = await open("main");
    await expectEcho(first, nonce);
    first.terminate(); // a dropped connection, not a clean close
    await idle();
    const reconnectsBefore = await metricValue("terminal_reconnections_total");
    const second = await open("main", { reconnect: 1 });
    try {
      // tmux redraws the whole screen for the new client: the earlier output is there without typing.
      await second.waitFor((out) => out.replace(ESCAPES, "").includes(`${nonce}-42`), {});
      expect(await metricValue("terminal_reconnections_total")).toBe(reconnectsBefore + 1);
      await expectEcho(second, "after-reconnect");
    } finally {
      await second.close();
    }
  });

  it("keeps order and bounded memory through a 50 MB burst to a deliberately slow client", async () => {
    await idle();
    const size = { columns: 120, rows: 40 };
    // A window of its own, one full-width pane: in the layout's narrow left pane tmux redraws line by line
    // and the burst takes minutes.
    tmux(
      "new-window",
      "-t",
      "=main:",
      "-n",
      "burst",
      "-c",
      join(cp.workspacesRoot, workspaceId, "volume/user/projects"),
    );
    const client = await open("main", { size });
    const relay = await waitFor("the relay", () => [...gateway.relays][0]);
    let maxBuffered = 0;
    afterEverySend(relay.client, () => {
      maxBuffered = Math.max(maxBuffered, relay.buffered.client);
    });
    const pausesBefore = await metricValue("terminal_backpressure_pauses_total", 'paused="upstream"');
    const screen = new Terminal({ cols: size.columns, rows: size.rows, allowProposedApi: true });
    try {
      const done = `burst-done-${Date.now().toString(36)}`;
      // 5,000,000 lines of 9 digits and a newline: 50 MB of output, then a marker. A short prompt and a
      // short command line keep the screen simple.
      writeFileSync(
        join(cp.workspacesRoot, workspaceId, "volume/user/projects/burst.sh"),
        `seq -f '%09.0f' 1 5000000\necho ${done}-$((6*7))\n`,
      );
      client.type("PS1='$ '; clear\r");
      await expectEcho(client, "burst-ready");
      const doneBytes = Buffer.from(`${done}-42`);
      // The slow reader renders everything in a terminal emulator, as a browser would, and reads no more
      // from its socket until the emulator has taken in the last message. It also stalls as the burst starts
      // (a phone on a bad network), until it has fallen behind by more than the relay's high-water mark.
      // (A stall longer than the box endpoint's ping timeout, 5-10 s, would cost the upstream connection,
      // with ttyd as with the built-in server; this one lasts as long as tmux takes to draw that much.)
      const chunks: Buffer[] = [];
      let tail = Buffer.alloc(0);
      const finished = new Promise<void>((resolve, reject) => {
        client.closed.then((c) =>
          reject(new Error(`terminal closed during the burst: ${c.code} ${c.reason}`)),
        );
        client.ws.on("message", (data: Buffer) => {
          if (data[0] !== 0x30) return;
          const body = data.subarray(1);
          chunks.push(body);
          client.ws.pause();
          screen.write(body, () => {
            if (!stalled) client.ws.resume();
          });
          if (Buffer.concat([tail, body]).includes(doneBytes)) resolve();
          tail = Buffer.from(body.subarray(Math.max(0, body.length - doneBytes.length)));
        });
      });
      let stalled = true;
      client.ws.pause();
      client.type("sh burst.sh\r");
      await waitFor(
        "the client to fall behind",
        () => relay.bytesDown - client.outputBytes > HIGH_WATER || relay.buffered.upstreamPaused,
        30_000,
      );
      stalled = false;
      client.ws.resume();
      await finished;

      // tmux renders a screen, not a stream: a client that falls behind gets the current screen redrawn
      // instead of every line, and tmux skips cells the client already shows. So lines may be skipped or
      // drawn in part, and a redraw may repeat lines still on screen, but a fully drawn line never comes
      // from further back than one screen...
      const text = Buffer.concat(chunks).toString("latin1").replace(ESCAPES, " ");
      const numbers = [...text.matchAll(/(?<!\d)\d{9}(?!\d)/g)].map((m) => Number(m[0]));
      expect(numbers.length).toBeGreaterThan(size.rows);
      let highest = 0;
      for (const n of numbers) {
        if (n <= highest - size.rows - 1) throw new Error(`line ${n} arrived after line ${highest}`);
        highest = Math.max(highest, n);
      }
      // ...and what the client's emulator shows in the end is exactly tmux's screen.
      await waitFor("the client's screen to match tmux's", async () => {
        await new Promise<void>((r) => screen.write("", r));
        const pane = tmux("capture-pane", "-p", "-t", "=main:").replace(/\n+$/, "").split("\n");
        const shownRows = Array.from(
          { length: pane.length },
          (_, i) =>
            screen.buffer.active.getLine(screen.buffer.active.viewportY + i)?.translateToString(true) ?? "",
        );
        return (
          pane.join("\n").trimEnd() === shownRows.join("\n").trimEnd() &&
          pane.some((l) => l.includes("005000000"))
        );
      });
      // The relay never held much more than its high-water mark for this client (sampled at every send, so
      // this is its peak). Whether its own backpressure had to engage depends on how much the kernel's
      // socket buffers absorbed (loopback autotuning) and how fast tmux draws; relay-scripted-box.test.ts
      // drives it deterministically with a box that never stops sending. (Memory per socket: `npm run bench`.)
      const paused =
        (await metricValue("terminal_backpressure_pauses_total", 'paused="upstream"')) > pausesBefore;
      expect(maxBuffered).toBeLessThan(HIGH_WATER + 1024 * 1024);
      if (!paused) expect(maxBuffered).toBeLessThanOrEqual(HIGH_WATER);
      await expectEcho(client, "after-burst");
    } finally {
      client.ws.resume();
      await client.close();
      screen.dispose();
      tmux("kill-window", "-t", "=main:burst");
    }
  }, 150_000);

  describe("refusals, each before any upstream connection", () => {
    it("refuses a socket without a token", async () => {
      const outcome = await refusedBeforeUpstream(() =>
        connectThroughRelay({ baseUrl: cp.url, sessionId: sessionIds.main! }),
      );
      expect(outcome).toEqual({ code: 4401, reason: "unauthorized: token missing" });
    });

    it("refuses a token sent in the URL instead of the subprotocol list", async () => {
      const token = await mint("main");
      const outcome = await refusedBeforeUpstream(() =>
        connectThroughRelay({ baseUrl: cp.url, sessionId: sessionIds.main!, suffix: `?token=${token}` }),
      );
      expect(outcome).toEqual({ code: 4401, reason: "unauthorized: token missing" });
    });

    it("refuses an expired token", async () => {
      const admin = await pool.query("SELECT created_by_id FROM sessions WHERE id = $1", [sessionIds.main]);
      const creator = await cp.deps.store.as(SYSTEM.auth).users.find(admin.rows[0].created_by_id);
      const minted = await gateway.tokens.mint(
        cp.deps.store.as(creator!).terminalTokens,
        { userId: admin.rows[0].created_by_id, workspaceId, sessionId: sessionIds.main! },
        Date.now() - 5 * 60_000,
      );
      const outcome = await refusedBeforeUpstream(() =>
        connectThroughRelay({ baseUrl: cp.url, sessionId: sessionIds.main!, token: minted.token }),
      );
      expect(outcome).toEqual({ code: 4401, reason: "unauthorized: token expired" });
    });

    it("refuses a replayed token", async () => {
      const token = await mint("main");
      const first = await connectThroughRelay({ baseUrl: cp.url, sessionId: sessionIds.main!, token });
      await expectEcho(first, "first-use");
      await first.close();
      const outcome = await refusedBeforeUpstream(() =>
        connectThroughRelay({ baseUrl: cp.url, sessionId: sessionIds.main!, token }),
      );
      expect(outcome).toEqual({ code: 4401, reason: "unauthorized: token already used" });
    });

    it("refuses a token for another session", async () => {
      const token = await mint("second");
      const outcome = await refusedBeforeUpstream(() =>
        connectThroughRelay({ baseUrl: cp.url, sessionId: sessionIds.main!, token }),
      );
      expect(outcome).toEqual({ code: 4401, reason: "unauthorized: token is for another session" });
    });

    it("refuses another user's session: 404 when minting, session gone on the socket", async () => {
      const { db } = cp.deps.database;
      const bob = await upsertUser(cp.deps.store, "user_bob_relay");
      const bobCookie = await cp.deps.authenticator.sessionFor(bob);
      const res = await fetch(`${cp.url}/api/v1/sessions/${sessionIds.main}/terminal-token`, {
        method: "POST",
        headers: { cookie: `berth_session=${bobCookie}` },
      });
      expect(res.status).toBe(404);
      // Even a token recorded for Bob on Alice's session (which the API never issues, and the authorization
      // layer refuses to record, so it is written straight to the table) opens nothing.
      const unchecked = {
        record: async (row: typeof terminalTokens.$inferInsert) => {
          await db.insert(terminalTokens).values(row);
        },
      };
      const forged = await gateway.tokens.mint(unchecked, {
        userId: bob.userId,
        workspaceId,
        sessionId: sessionIds.main!,
      });
      const outcome = await refusedBeforeUpstream(() =>
        connectThroughRelay({ baseUrl: cp.url, sessionId: sessionIds.main!, token: forged.token }),
      );
      expect(outcome).toEqual({ code: 4404, reason: "session gone" });
    });

    it("refuses a foreign Origin and a missing one, with HTTP 403", async () => {
      for (const origin of ["http://evil.example", "null", null]) {
        const token = await mint("main");
        const outcome = await refusedBeforeUpstream(() =>
          connectThroughRelay({ baseUrl: cp.url, sessionId: sessionIds.main!, token, origin }),
        );
        expect(outcome).toEqual({ status: 403 });
      }
    });

    it("refuses a malicious session name in the path; a smuggled ?arg= never reaches the box", async () => {
      const token = await mint("main");
      const outcome = await refusedBeforeUpstream(() =>
        connectThroughRelay({
          baseUrl: cp.url,
          sessionId: sessionIds.main!,
          token,
          pathSegment: encodeURIComponent("x#(touch /tmp/berth-pwned)y"),
        }),
      );
      expect(outcome).toEqual({ code: 4401, reason: "unauthorized: token is for another session" });

      rmSync("/tmp/berth-pwned-arg", { force: true });
      const before = upstreamUrls.length;
      const client = await open("main", { suffix: "?arg=x%23(touch%20/tmp/berth-pwned-arg)y&arg=second" });
      try {
        await expectEcho(client, "smuggled");
        expect(upstreamUrls.slice(before)).toEqual([`ws://127.0.0.1:${terminalPort}/ws?arg=main`]);
      } finally {
        await client.close();
      }
      expect(existsSync("/tmp/berth-pwned-arg")).toBe(false);
    });

    it("refuses a session whose stored name is not a valid tmux name (checked again, not trusted)", async () => {
      const { rows } = await pool.query(
        "INSERT INTO sessions (workspace_id, name) VALUES ($1, 'placeholder') RETURNING id",
        [workspaceId],
      );
      const id = rows[0].id as string;
      await pool.query("ALTER TABLE sessions DROP CONSTRAINT sessions_name_check");
      try {
        await pool.query("UPDATE sessions SET name = $2 WHERE id = $1", [id, "x#(touch /tmp/berth-pwned)y"]);
        sessionIds.evil = id;
        const token = await mint("evil");
        const outcome = await refusedBeforeUpstream(() =>
          connectThroughRelay({ baseUrl: cp.url, sessionId: id, token }),
        );
        expect(outcome).toEqual({ code: 1011, reason: "invalid session name" });
      } finally {
        await pool.query("UPDATE sessions SET closed_at = now(), name = 'closed-evil' WHERE id = $1", [id]);
        await pool.query(
          `ALTER TABLE sessions ADD CONSTRAINT sessions_name_check CHECK (name ~ '^[a-z0-9-]{1,32}$')`,
        );
      }
      expect(existsSync("/tmp/berth-pwned")).toBe(false);
    });

    it("refuses more than the per-session cap of sockets", async () => {
      await idle();
      const clients: TtydClient[] = [];
      try {
        for (let i = 0; i < MAX_PER_SESSION; i++) clients.push(await open("main"));
        await expectEcho(clients[0]!, "capped");
        const outcome = await refusedBeforeUpstream(async () => open("main"));
        expect(outcome).toEqual({
          code: 4409,
          reason: `too many terminals for this session (max ${MAX_PER_SESSION})`,
        });
        // Another session is not affected.
        const other = await open("second");
        await expectEcho(other, "other-session");
        clients.push(other);
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }
      await idle();
      const again = await open("main");
      await expectEcho(again, "slot-freed");
      await again.close();
    });
  });

  async function metricValue(name: string, labels = ""): Promise<number> {
    const text = await (await fetch(`${cp.url}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(labels ? `${name}{${labels}}` : `${name} `));
    return line ? Number(line.split(" ").at(-1)) : 0;
  }
});
