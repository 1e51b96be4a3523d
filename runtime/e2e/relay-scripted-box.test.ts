/**
 * The relay against a box endpoint the test scripts: what exactly reaches the box (URL, Basic header, the
 * rewritten init, every later byte and frame type), what exactly reaches the client, backpressure on both
 * legs with a box that ignores PAUSE like ttyd 1.7.7, close-code mapping, idle timeout, activity, metrics
 * and rate limits. Real Postgres and the real control plane; only the box end is scripted, because these
 * cases need a box that misbehaves on cue (drops the connection, closes with 1011, never stops sending).
 * runtime/e2e/relay.test.ts covers the real box agent and tmux.
 */

import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import { TtydClient, TtydConnectError } from "../../box/terminal/client.ts";
import { ATTACH_ENDED_MARKER, encodeInput, encodeResize } from "../../box/terminal/protocol.ts";
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { defaultConnectUpstream, type TerminalGatewayOptions } from "../gateway/terminal/gateway.ts";
import { sessions, workspaceInstances } from "../store/schema.ts";
import { storeWorkspaceSecrets } from "../store/secrets.ts";
import { startTestControlPlane, type TestControlPlane } from "../test/control-plane.ts";
import { insertWorkspace } from "../test/fixtures.ts";
import { afterEverySend, connectThroughRelay, mintTerminalToken } from "../test/terminal.ts";
import { waitFor } from "../test/wait.ts";

const CREDENTIAL = "berth:relay-test-credential";
const CREDENTIAL_B64 = Buffer.from(CREDENTIAL).toString("base64");

interface BoxMessage {
  data: Buffer;
  binary: boolean;
}

interface BoxConnection {
  ws: WebSocket;
  url: string;
  authorization: string | undefined;
  protocol: string;
  messages: BoxMessage[];
  init: Buffer | null;
  closed: Promise<{ code: number }>;
}

/** A scriptable ttyd-protocol endpoint: checks what ttyd checks, records everything, ignores PAUSE. */
class ScriptedBox {
  readonly server: Server;
  readonly wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (p) => (p.has("tty") ? "tty" : false),
  });
  readonly connections: BoxConnection[] = [];
  upgrades = 0;
  /** Answer the next upgrade with this HTTP status instead of accepting it. */
  refuseNext: number | null = null;
  /** What to do once a connection's init arrived (after title and preferences were sent). */
  onReady: (c: BoxConnection) => void = () => {};

  constructor() {
    this.server = createServer((_req, res) => res.writeHead(404).end());
    this.server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.upgrades++;
      if (this.refuseNext !== null) {
        const status = this.refuseNext;
        this.refuseNext = null;
        socket.end(`HTTP/1.1 ${status} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        return;
      }
      if (req.headers.authorization !== `Basic ${CREDENTIAL_B64}`) {
        socket.end("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.#serve(ws, req));
    });
  }

  #serve(ws: WebSocket, req: IncomingMessage): void {
    let resolveClosed!: (v: { code: number }) => void;
    const c: BoxConnection = {
      ws,
      url: req.url ?? "",
      authorization: req.headers.authorization,
      protocol: ws.protocol,
      messages: [],
      init: null,
      closed: new Promise((r) => {
        resolveClosed = r;
      }),
    };
    this.connections.push(c);
    ws.on("close", (code) => resolveClosed({ code }));
    ws.on("error", () => {});
    ws.on("message", (data: RawData, binary: boolean) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer);
      if (c.init === null) {
        c.init = buf;
        const init = JSON.parse(buf.toString("utf8"));
        if (init.AuthToken !== CREDENTIAL_B64) return ws.close(1008, "authentication failed");
        ws.send(Buffer.from("1title (box)"));
        ws.send(Buffer.from("2{}"));
        this.onReady(c);
        return;
      }
      c.messages.push({ data: buf, binary });
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    return (this.server.address() as AddressInfo).port;
  }

  close(): void {
    for (const c of this.connections) c.ws.terminate();
    this.server.close();
    this.server.closeAllConnections();
  }
}

async function metricValue(cp: TestControlPlane, series: string): Promise<number> {
  const text = await cp.deps.metrics.registry.metrics();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

/** A control plane whose one ready workspace's terminal endpoint is a ScriptedBox. */
async function setup(options: Partial<TerminalGatewayOptions> = {}) {
  const box = new ScriptedBox();
  const port = await box.listen();
  const upstreamUrls: string[] = [];
  /** The relay's upstream sockets, in the order it opened them. */
  const upstreamSockets: WebSocket[] = [];
  const cp = await startTestControlPlane(
    {},
    {
      terminal: {
        socketRateLimit: { points: 1000, durationSeconds: 60 },
        mintRateLimit: { points: 1000, durationSeconds: 60 },
        pingIntervalMs: 100,
        sweepIntervalMs: 50,
        activityFlushMs: 200,
        connectUpstream: (url, o) => {
          upstreamUrls.push(url);
          const ws = defaultConnectUpstream(url, o);
          upstreamSockets.push(ws);
          return ws;
        },
        ...options,
      },
    },
  );
  afterAll(() => box.close());
  const { db, pool } = cp.deps.database;
  const owner = await upsertUser(cp.deps.store, LOCAL_OWNER_EXTERNAL_ID, { isAdmin: true });
  const ws = await insertWorkspace(db, owner.userId, { name: "relay", state: "ready" });
  await db.insert(workspaceInstances).values({
    workspaceId: ws!.id,
    agentTokenHash: randomBytes(16).toString("hex"),
    publicIp: "127.0.0.1",
    terminalPort: port,
  });
  await storeWorkspaceSecrets(db, cp.deps.secretBox, ws!.id, { "ttyd-credential": CREDENTIAL });
  const newSession = async (name: string) => {
    const [row] = await db
      .insert(sessions)
      .values({ workspaceId: ws!.id, name, createdById: owner.userId })
      .returning();
    return row!.id;
  };
  const sessionId = await newSession("main");
  const mint = async (id = sessionId) => {
    const m = await mintTerminalToken(cp.url, id, cp.localToken);
    expect(m.status).toBe(201);
    return m.token!;
  };
  const open = async (extra: Partial<Parameters<typeof connectThroughRelay>[0]> = {}) =>
    connectThroughRelay({
      baseUrl: cp.url,
      sessionId,
      token: await mint(extra.sessionId ?? sessionId),
      ...extra,
    });
  /** Opens a terminal and waits until the box has its init (the relay is fully connected). */
  const openReady = async (extra: Partial<Parameters<typeof connectThroughRelay>[0]> = {}) => {
    const before = box.connections.length;
    const client = await open(extra);
    const c = await waitFor(
      "the box connection",
      () => box.connections[before]?.init && box.connections[before],
    );
    return { client, box: c };
  };
  return {
    cp,
    box,
    port,
    pool,
    db,
    owner,
    workspaceId: ws!.id,
    sessionId,
    newSession,
    mint,
    open,
    openReady,
    upstreamUrls,
    upstreamSockets,
  };
}

describe("terminal relay against a scripted box endpoint", async () => {
  const t = await setup();
  const gateway = t.cp.deps.terminal;
  const idle = () => waitFor("no relayed sockets", () => gateway.socketCount === 0);

  beforeEach(async () => {
    t.box.onReady = () => {};
    t.box.refuseNext = null;
    await t.pool.query("UPDATE workspaces SET state = 'ready' WHERE id = $1", [t.workspaceId]);
    await idle();
  });

  it("builds the upstream itself and rewrites the init: the credential comes from the relay, nothing else passes", async () => {
    const client = await t.open({ suffix: "?arg=evil&arg=x%23(id)" });
    try {
      const c = await waitFor("box connection", () => t.box.connections.at(-1));
      expect(c.url).toBe("/ws?arg=main");
      expect(c.authorization).toBe(`Basic ${CREDENTIAL_B64}`);
      expect(c.protocol).toBe("tty");
      await waitFor("init", () => c.init);
      expect(JSON.parse(c.init!.toString())).toEqual({ AuthToken: CREDENTIAL_B64, columns: 120, rows: 40 });
      expect(t.upstreamUrls.at(-1)).toBe(`ws://127.0.0.1:${t.port}/ws?arg=main`);
    } finally {
      await client.close();
    }
  });

  it("forwards every later message byte for byte, binary and text as sent, PAUSE and RESUME included", async () => {
    const token = await t.mint();
    const ws = new WebSocket(
      `${t.cp.url.replace("http", "ws")}/api/v1/sessions/${t.sessionId}/terminal`,
      ["tty", `berth.token.${token}`],
      {
        headers: { Origin: t.cp.url },
      },
    );
    const received: BoxMessage[] = [];
    ws.on("message", (data: Buffer, binary) => received.push({ data, binary }));
    await new Promise((r) => ws.once("open", r));
    expect(ws.protocol).toBe("tty");
    ws.send(
      Buffer.from(JSON.stringify({ AuthToken: "forged", columns: 90, rows: 20, reconnect: 3, x: "y" })),
      { binary: false },
    );
    const before = t.box.connections.length;
    const c = await waitFor(
      "box connection",
      () => t.box.connections[before]?.init && t.box.connections[before],
    );
    expect(JSON.parse(c.init!.toString())).toEqual({ AuthToken: CREDENTIAL_B64, columns: 90, rows: 20 });
    const sent: BoxMessage[] = [
      { data: encodeInput("ls -la\r"), binary: true },
      { data: Buffer.from("0text frame ünïcode"), binary: false },
      { data: Buffer.of(0x32), binary: true },
      { data: Buffer.of(0x33), binary: true },
      { data: encodeResize({ columns: 150, rows: 50 }), binary: true },
      { data: Buffer.concat([Buffer.of(0x30), randomBytes(100_000)]), binary: true },
      { data: Buffer.from('{"second":"init is just bytes now"}'), binary: false },
    ];
    for (const m of sent) ws.send(m.data, { binary: m.binary });
    await waitFor("everything at the box", () => c.messages.length === sent.length);
    expect(c.messages).toEqual(sent);

    const down: BoxMessage[] = [
      { data: Buffer.concat([Buffer.of(0x30), randomBytes(70_000)]), binary: true },
      { data: Buffer.from("0text from the box"), binary: false },
    ];
    // A box's title is replaced by ours (session and workspace names); everything else passes as sent.
    c.ws.send(Buffer.from("1new title"));
    for (const m of down) c.ws.send(m.data, { binary: m.binary });
    await waitFor("everything at the client", () => received.length === 3 + down.length);
    expect(received.slice(3)).toEqual(down);
    expect(received.slice(0, 3).map((m) => m.data.toString())).toEqual([
      "1main · relay",
      "2{}",
      "1main · relay",
    ]);
    ws.close();
  });

  it("relays a read-only viewer's screen but drops its keystrokes and resizes", async () => {
    const res = await fetch(`${t.cp.url}/api/v1/sessions/${t.sessionId}/terminal-token`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.cp.localToken}`, "content-type": "application/json" },
      body: JSON.stringify({ readOnly: true }),
    });
    expect(res.status).toBe(201);
    const { token } = await res.json();
    const before = t.box.connections.length;
    const viewer = await connectThroughRelay({ baseUrl: t.cp.url, sessionId: t.sessionId, token });
    try {
      const c = await waitFor(
        "box connection",
        () => t.box.connections[before]?.init && t.box.connections[before],
      );
      const relay = [...gateway.relays].find((r) => r.identity.readOnly)!;
      const idleSince = relay.lastActivityAt;
      await waitFor("the clock to move on", () => Date.now() > idleSince);
      viewer.type("rm -rf ~\r");
      viewer.resize({ columns: 100, rows: 30 }); // a viewer must not shrink the owner's screen
      viewer.pause(); // passes: what arrives first proves the two before it were dropped
      await waitFor("the viewer's PAUSE at the box", () => c.messages.length === 1);
      expect(c.messages.map((m) => m.data.toString())).toEqual(["2"]);
      // Nothing a viewer sends is activity: its socket idles, and autostop goes ahead, as without it.
      expect(relay.lastActivityAt).toBe(idleSince);
      c.ws.send(Buffer.from("0what the owner typed"));
      await viewer.waitFor("what the owner typed");
    } finally {
      await viewer.close();
    }
    const bad = await fetch(`${t.cp.url}/api/v1/sessions/${t.sessionId}/terminal-token`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.cp.localToken}`, "content-type": "application/json" },
      body: JSON.stringify({ readOnly: "yes" }),
    });
    expect(bad.status).toBe(400);
  });

  it("holds every resize within bounds and drops malformed ones", async () => {
    const before = t.box.connections.length;
    const client = await connectThroughRelay({
      baseUrl: t.cp.url,
      sessionId: t.sessionId,
      token: await t.mint(),
      size: { columns: 70000, rows: 5000 },
    });
    try {
      const c = await waitFor(
        "box connection",
        () => t.box.connections[before]?.init && t.box.connections[before],
      );
      expect(JSON.parse(c.init!.toString())).toMatchObject({ columns: 1000, rows: 1000 });
      client.resize({ columns: 5000, rows: 70000 });
      client.sendRaw(Buffer.from('1{"columns":"wide"}'));
      client.sendRaw(Buffer.from("1not json"));
      client.resize({ columns: 100, rows: 30 });
      await waitFor("both sane resizes at the box", () => c.messages.length === 2);
      expect(c.messages.map((m) => m.data.toString())).toEqual([
        '1{"columns":1000,"rows":1000}',
        '1{"columns":100,"rows":30}',
      ]);
    } finally {
      await client.close();
    }
  });

  it("shows the control plane's window title, never the box's (ttyd's is its command line and host)", async () => {
    const before = t.box.connections.length;
    const client = await connectThroughRelay({
      baseUrl: t.cp.url,
      sessionId: t.sessionId,
      token: await t.mint(),
    });
    try {
      const c = await waitFor(
        "box connection",
        () => t.box.connections[before]?.init && t.box.connections[before],
      );
      c.ws.send(Buffer.from("0ready")); // after the box's title and preferences
      await client.waitFor("ready");
      expect(client.title).toBe("main · relay");
    } finally {
      await client.close();
    }
  });

  it("uses one token once, even when two sockets race with it", async () => {
    const token = await t.mint();
    const before = t.upstreamUrls.length;
    const boxesBefore = t.box.connections.length;
    const clients = await Promise.all(
      [1, 2, 3].map(() => connectThroughRelay({ baseUrl: t.cp.url, sessionId: t.sessionId, token })),
    );
    try {
      const refused: number[] = [];
      for (const c of clients) void c.closed.then((info) => refused.push(info.code));
      // Two are refused; the third is relayed all the way: the box has its init, and it still is open.
      await waitFor("two refusals", () => refused.length === 2);
      expect(refused).toEqual([4401, 4401]);
      await waitFor("the winner at the box", () => t.box.connections[boxesBefore]?.init);
      expect(clients.filter((c) => c.isOpen)).toHaveLength(1);
      expect(t.box.connections).toHaveLength(boxesBefore + 1);
      expect(t.upstreamUrls.length).toBe(before + 1);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it("delivers 50 MB in order to a slow client while a box that ignores PAUSE keeps sending; the relay holds at most about its high-water mark", async () => {
    const total = 50 * 1024 * 1024;
    const chunk = 64 * 1024;
    const { highWaterMark } = gateway.options;
    // The box sends as fast as its own socket allows (like ttyd: it waits for each write, never for PAUSE).
    t.box.onReady = (c) => {
      let offset = 0;
      const pump = () => {
        while (offset < total && c.ws.readyState === WebSocket.OPEN && c.ws.bufferedAmount < 256 * 1024) {
          const body = Buffer.allocUnsafe(chunk);
          for (let i = 0; i < chunk; i += 4) body.writeUInt32BE((offset + i) >>> 0, i);
          offset += chunk;
          c.ws.send(Buffer.concat([Buffer.of(0x30), body]), { binary: true }, () => setImmediate(pump));
        }
      };
      pump();
    };
    const client = await t.open();
    const relay = await waitFor("the relay", () => [...gateway.relays][0]);
    const pausesBefore = await metricValue(t.cp, 'terminal_backpressure_pauses_total{paused="upstream"}');
    let maxBuffered = 0;
    afterEverySend(relay.client, () => {
      maxBuffered = Math.max(maxBuffered, relay.buffered.client);
    });
    let received = 0;
    let bad: string | null = null;
    let stalls = 0;
    const done = new Promise<void>((resolve, reject) => {
      client.closed.then((c) => reject(new Error(`closed early: ${c.code} ${c.reason}`)));
      client.ws.on("message", (data: Buffer) => {
        if (data[0] !== 0x30) return;
        for (let i = 1; i + 4 <= data.length; i += 4) {
          const expected = (received + i - 1) >>> 0;
          if (data.readUInt32BE(i) !== expected && !bad) bad = `at byte ${received + i - 1}`;
        }
        received += data.length - 1;
        // Slow: at 2, 12, 22 and 32 MiB it stops reading its socket until the relay has held its output back
        // and stopped reading the box (well before the end, so there is always enough in flight for that).
        if (received >= (2 + 10 * stalls) * 1024 * 1024 && stalls < 4) {
          stalls++;
          client.ws.pause();
          waitFor("the relay to stop reading the box", () => relay.buffered.upstreamPaused).then(
            () => client.ws.resume(),
            reject,
          );
        }
        if (received >= total) resolve();
      });
    });
    try {
      await done;
      expect(bad).toBeNull();
      expect(received).toBe(total);
      expect(
        await metricValue(t.cp, 'terminal_backpressure_pauses_total{paused="upstream"}'),
      ).toBeGreaterThanOrEqual(pausesBefore + 4);
      expect(maxBuffered).toBeGreaterThan(highWaterMark); // the client really was the bottleneck
      expect(maxBuffered).toBeLessThan(highWaterMark + 2 * chunk);
      // The relay also asked the box to PAUSE and RESUME (honoured by the built-in endpoint, ignored by ttyd).
      const box = t.box.connections.at(-1)!;
      const commands = box.messages.map((m) => m.data.toString());
      expect(commands).toContain("2");
      expect(commands).toContain("3");
    } finally {
      await client.close();
    }
  }, 60_000);

  it("stops reading a client that floods input faster than the box reads, and loses nothing", async () => {
    const { client, box } = await t.openReady();
    const { highWaterMark } = gateway.options;
    box.ws.pause(); // the box stops reading
    const relay = [...gateway.relays][0]!;
    let maxUp = 0;
    // The relay writes the box's socket itself after the handshake (a frame passthrough): sample that.
    afterEverySend(relay.upstream, () => {
      maxUp = Math.max(maxUp, relay.buffered.upstream);
    });
    try {
      const messages = 200;
      const size = 64 * 1024;
      for (let i = 0; i < messages; i++) {
        const body = Buffer.alloc(size, i % 251);
        client.ws.send(Buffer.concat([Buffer.of(0x30), body]));
      }
      await waitFor("relay stops reading the client", () =>
        [...gateway.relays].some((r) => r.buffered.clientPaused),
      );
      box.ws.resume();
      await waitFor("all input at the box", () => box.messages.length === messages);
      box.messages.forEach((m, i) => {
        expect(m.data.length).toBe(size + 1);
        expect(m.data[1]).toBe(i % 251);
      });
      expect(maxUp).toBeGreaterThan(highWaterMark);
      expect(maxUp).toBeLessThan(highWaterMark + 2 * size);
    } finally {
      await client.close();
    }
  });

  /** `reader` stops reading, and `sender` sends it `messages` of 64 KiB (INPUT or OUTPUT: both are "0"). */
  const backUp = (sender: WebSocket, reader: WebSocket, messages: number): void => {
    reader.pause();
    for (let i = 0; i < messages; i++) sender.send(Buffer.concat([Buffer.of(0x30), Buffer.alloc(64 * 1024)]));
  };

  it("ends at once when the box dies while the client's input is held back (the paused leg still reads its close answer)", async () => {
    const { client, box } = await t.openReady();
    const relay = [...gateway.relays][0]!;
    backUp(client.ws, box.ws, 200);
    await waitFor("the relay to stop reading the client", () => relay.buffered.clientPaused);
    box.ws.terminate();
    // Nothing would resume the client's leg once the box was gone: the close waited for CLOSE_TIMEOUT_MS (30 s).
    await waitFor("the relay to end", () => gateway.socketCount === 0, 10_000);
    expect(await client.closed).toEqual({ code: 4502, reason: "box connection lost" });
  });

  it("hangs up the box at once when a client whose output is held back goes away", async () => {
    const { client, box } = await t.openReady();
    const relay = [...gateway.relays][0]!;
    backUp(box.ws, client.ws, 100);
    await waitFor("the relay to stop reading the box", () => relay.buffered.upstreamPaused);
    client.ws.terminate();
    // The box's answer to the relay's close frame is read although the box's leg was paused.
    await waitFor("the box's leg closed", () => box.ws.readyState === WebSocket.CLOSED, 10_000);
  });

  describe("close codes and reasons", () => {
    const closeWith = async (act: (box: BoxConnection) => void | Promise<void>) => {
      const { client, box } = await t.openReady();
      await act(box);
      return client.closed;
    };

    it("upstream 1000: session ended (1000)", async () => {
      expect(await closeWith((b) => b.ws.close(1000))).toEqual({ code: 1000, reason: "session ended" });
    });

    it("upstream dropped without a close frame (1006, which ws cannot send): box connection lost (4502)", async () => {
      expect(await closeWith((b) => b.ws.terminate())).toEqual({ code: 4502, reason: "box connection lost" });
    });

    it("ttyd's attach command says tmux ended, then waits: session ended (1000), and the relay hangs up the box", async () => {
      let boxLeg: BoxConnection | null = null;
      const closed = await closeWith((b) => {
        boxLeg = b;
        // What ttyd relays from `berth-tmux-attach` after the shell exits: tmux's goodbye, then the marker.
        b.ws.send(Buffer.concat([Buffer.of(0x30), Buffer.from(`[exited]\r\n${ATTACH_ENDED_MARKER}`)]));
      });
      expect(closed).toEqual({ code: 1000, reason: "session ended" });
      await waitFor("the relay to close the box's leg", () => boxLeg!.ws.readyState === boxLeg!.ws.CLOSED);
    });

    it("upstream 1011 (process failed) and 1008 (auth): terminal error (1011)", async () => {
      expect(await closeWith((b) => b.ws.close(1011, "10.0.0.7 exploded"))).toEqual({
        code: 1011,
        reason: "terminal error",
      });
      expect(await closeWith((b) => b.ws.close(1008))).toEqual({ code: 1011, reason: "terminal error" });
    });

    it("the session was closed meanwhile: session gone (4404)", async () => {
      const id = await t.newSession(`gone-${Date.now().toString(36)}`);
      const { client, box } = await t.openReady({ sessionId: id });
      await t.pool.query("UPDATE sessions SET closed_at = now() WHERE id = $1", [id]);
      box.ws.terminate();
      expect(await client.closed).toEqual({ code: 4404, reason: "session gone" });
    });

    it("the workspace went to sleep meanwhile: box asleep (4503)", async () => {
      const closed = await closeWith(async (b) => {
        await t.pool.query("UPDATE workspaces SET state = 'hibernating' WHERE id = $1", [t.workspaceId]);
        b.ws.terminate();
      });
      expect(closed).toEqual({ code: 4503, reason: "box asleep (workspace hibernating)" });
    });

    it("the box refuses the upgrade or is not listening: box unreachable (4502)", async () => {
      t.box.refuseNext = 401;
      const refused = await t.open();
      expect(await refused.closed).toEqual({ code: 4502, reason: "box unreachable" });
      const { rows } = await t.pool.query(
        "SELECT terminal_port FROM workspace_instances WHERE workspace_id = $1",
        [t.workspaceId],
      );
      await t.pool.query("UPDATE workspace_instances SET terminal_port = 1 WHERE workspace_id = $1", [
        t.workspaceId,
      ]);
      try {
        const dead = await t.open();
        expect(await dead.closed).toEqual({ code: 4502, reason: "box unreachable" });
      } finally {
        await t.pool.query("UPDATE workspace_instances SET terminal_port = $2 WHERE workspace_id = $1", [
          t.workspaceId,
          rows[0].terminal_port,
        ]);
      }
    });

    it("a box that is asleep at connect time: 409 on mint, 4503 on the socket, and no upstream connection", async () => {
      await t.pool.query("UPDATE workspaces SET state = 'hibernated' WHERE id = $1", [t.workspaceId]);
      const minted = await mintTerminalToken(t.cp.url, t.sessionId, t.cp.localToken);
      expect(minted.status).toBe(409);
      expect(minted.body.error).toMatchObject({ code: "workspace_not_ready", state: "hibernated" });
      const token = await gateway.tokens.mint(t.cp.deps.store.as(t.owner).terminalTokens, {
        userId: t.owner.userId,
        workspaceId: t.workspaceId,
        sessionId: t.sessionId,
      });
      const before = t.upstreamUrls.length;
      const client = await connectThroughRelay({
        baseUrl: t.cp.url,
        sessionId: t.sessionId,
        token: token.token,
      });
      expect(await client.closed).toEqual({ code: 4503, reason: "box asleep (workspace hibernated)" });
      expect(t.upstreamUrls.length).toBe(before);
    });

    it("a first message that is not the JSON init, or none at all: 4400", async () => {
      const token = await t.mint();
      const raw = await TtydClient.connect({
        url: `${t.cp.url.replace("http", "ws")}/api/v1/sessions/${t.sessionId}/terminal`,
        protocols: ["tty", `berth.token.${token}`],
        headers: { Origin: t.cp.url },
        sendInit: false,
      });
      raw.type("rm -rf /\r");
      expect(await raw.closed).toEqual({ code: 4400, reason: "the first message must be the JSON init" });

      gateway.options.initTimeoutMs = 300;
      try {
        const silent = await TtydClient.connect({
          url: `${t.cp.url.replace("http", "ws")}/api/v1/sessions/${t.sessionId}/terminal`,
          protocols: ["tty", `berth.token.${await t.mint()}`],
          headers: { Origin: t.cp.url },
          sendInit: false,
        });
        expect(await silent.closed).toEqual({ code: 4400, reason: "no init message" });
      } finally {
        gateway.options.initTimeoutMs = 10_000;
      }
    });

    it("refuses an upgrade that does not offer tty with HTTP 400, before anything else", async () => {
      const before = t.upstreamUrls.length;
      await expect(
        connectThroughRelay({
          baseUrl: t.cp.url,
          sessionId: t.sessionId,
          protocols: [`berth.token.${await t.mint()}`],
        }),
      ).rejects.toSatisfy((e) => e instanceof TtydConnectError && e.status === 400);
      expect(t.upstreamUrls.length).toBe(before);
    });
  });

  it("closes an idle socket (4408); input keeps it open, a trickle of output does not", async () => {
    // Well above what a key's round trip can take on a loaded machine: the typing socket never idles.
    gateway.options.idleTimeoutMs = 2_000;
    try {
      // Two sockets opened together: one quiet, one typing a key each time the box got the previous one. The
      // quiet one's idle close is the clock: the sweep that closed it left the typing one open.
      const typing = await t.openReady();
      const quiet = await t.openReady();
      let quietClosed = false;
      const quietClose = quiet.client.closed.then((info) => {
        quietClosed = true;
        return info;
      });
      for (let keys = 1; !quietClosed; keys++) {
        typing.client.type("x");
        await waitFor("the key at the box", () => quietClosed || typing.box.messages.length >= keys);
      }
      expect(await quietClose).toEqual({ code: 4408, reason: "idle timeout" });
      expect(typing.client.isOpen).toBe(true);
      expect(await typing.client.closed).toEqual({ code: 4408, reason: "idle timeout" });

      // A clock in a status line: a few bytes a second is not activity.
      const ticking = await t.openReady();
      const tick = setInterval(() => ticking.box.ws.send(Buffer.from("0\x1b[1;1H12:00")), 100);
      try {
        expect(await ticking.client.closed).toEqual({ code: 4408, reason: "idle timeout" });
      } finally {
        clearInterval(tick);
      }
    } finally {
      gateway.options.idleTimeoutMs = 30 * 60_000;
    }
  });

  it("records activity on the session and the workspace for autostop", async () => {
    await t.pool.query("UPDATE sessions SET last_activity_at = NULL WHERE id = $1", [t.sessionId]);
    await t.pool.query("UPDATE workspaces SET last_activity_at = NULL WHERE id = $1", [t.workspaceId]);
    const before = Date.now();
    const { client } = await t.openReady();
    client.type("echo hi\r");
    const row = await waitFor("activity recorded", async () => {
      const { rows } = await t.pool.query(
        `SELECT s.last_activity_at AS s, w.last_activity_at AS w FROM sessions s JOIN workspaces w ON w.id = s.workspace_id WHERE s.id = $1`,
        [t.sessionId],
      );
      return rows[0].s && rows[0].w ? rows[0] : null;
    });
    // Recorded for this socket: not before it opened, not after it was seen.
    expect(row.s.getTime()).toBeGreaterThanOrEqual(before);
    expect(row.s.getTime()).toBeLessThanOrEqual(Date.now());
    expect(row.w.getTime()).toBe(row.s.getTime());
    await client.close();
  });

  it("exports sockets, durations, connections, reconnections and ping/pong latency for both legs", async () => {
    const before = {
      connections: await metricValue(t.cp, "terminal_connections_total"),
      reconnections: await metricValue(t.cp, "terminal_reconnections_total"),
      durations: await metricValue(t.cp, "terminal_socket_duration_seconds_count"),
      client: await metricValue(t.cp, 'terminal_latency_seconds_count{leg="client"}'),
      upstream: await metricValue(t.cp, 'terminal_latency_seconds_count{leg="upstream"}'),
    };
    const { client } = await t.openReady({ reconnect: 4 });
    expect(await metricValue(t.cp, "terminal_sockets")).toBe(1);
    await waitFor(
      "pongs on both legs",
      async () =>
        (await metricValue(t.cp, 'terminal_latency_seconds_count{leg="client"}')) > before.client &&
        (await metricValue(t.cp, 'terminal_latency_seconds_count{leg="upstream"}')) > before.upstream,
    );
    await client.close();
    await idle();
    expect(await metricValue(t.cp, "terminal_sockets")).toBe(0);
    expect(await metricValue(t.cp, "terminal_connections_total")).toBe(before.connections + 1);
    expect(await metricValue(t.cp, "terminal_reconnections_total")).toBe(before.reconnections + 1);
    expect(await metricValue(t.cp, "terminal_socket_duration_seconds_count")).toBe(before.durations + 1);
    // Served at /metrics like everything else.
    expect(await (await fetch(`${t.cp.url}/metrics`)).text()).toContain("terminal_latency_seconds_bucket");
  });

  it("sends 1001 to every socket when the control plane shuts down, and records their activity", async () => {
    const { client } = await t.openReady();
    client.type("x");
    // A second socket still being authorized when the shutdown comes (its token held at the database).
    const consume = gateway.tokens.consume.bind(gateway.tokens);
    let letThrough!: () => void;
    const held = new Promise<void>((resolve) => {
      letThrough = resolve;
    });
    let consuming = false;
    gateway.tokens.consume = async (claims) => {
      consuming = true;
      await held;
      return consume(claims);
    };
    const late = connectThroughRelay({
      baseUrl: t.cp.url,
      sessionId: t.sessionId,
      token: await t.mint(),
    }).catch((e) => e);
    await waitFor("the second socket's authorization", () => consuming);
    await gateway.close();
    letThrough();
    expect(await client.closed).toEqual({ code: 1001, reason: "server restarting" });
    // Answered, not left open for the client to give up on (the HTTP server's close would wait for it).
    const lateRefusal = await late;
    expect(lateRefusal).toBeInstanceOf(TtydConnectError);
    expect(lateRefusal.status).toBe(503);
    const refused = await connectThroughRelay({
      baseUrl: t.cp.url,
      sessionId: t.sessionId,
      token: "x",
    }).catch((e) => e);
    expect(refused).toBeInstanceOf(TtydConnectError);
    expect(refused.status).toBe(503);
  });
});

describe("terminal rate limits", async () => {
  const t = await setup({
    socketRateLimit: { points: 2, durationSeconds: 60 },
    mintRateLimit: { points: 4, durationSeconds: 60 },
  });

  it("limits socket creation per user (4429) and token minting per user (429), before any upstream connection", async () => {
    const tokens = [await t.mint(), await t.mint(), await t.mint()];
    for (const token of tokens.slice(0, 2)) {
      const c = await connectThroughRelay({ baseUrl: t.cp.url, sessionId: t.sessionId, token });
      await waitFor("relayed", () => t.box.connections.length > 0 && t.box.connections.at(-1)!.init);
      await c.close();
    }
    const before = t.upstreamUrls.length;
    const limited = await connectThroughRelay({
      baseUrl: t.cp.url,
      sessionId: t.sessionId,
      token: tokens[2],
    });
    const closed = await limited.closed;
    expect(closed.code).toBe(4429);
    expect(closed.reason).toMatch(/^rate limited; retry in \d+s$/);
    expect(t.upstreamUrls.length).toBe(before);

    await t.mint(); // the fourth
    const res = await mintTerminalToken(t.cp.url, t.sessionId, t.cp.localToken);
    expect(res.status).toBe(429);
    expect(res.body.error.code).toBe("rate_limited");
  });
});

describe("terminal relay as a frame passthrough", async () => {
  const upstreamMaxPayload = 64 * 1024;
  const t = await setup({ upstreamMaxPayload });
  const gateway = t.cp.deps.terminal;

  beforeEach(async () => {
    t.box.onReady = () => {};
    await waitFor("no relayed sockets", () => gateway.socketCount === 0);
  });

  it("forwards a fragmented message whole with the client's ping between its fragments, and answers the ping itself", async () => {
    const { client, box } = await t.openReady();
    try {
      const pong = new Promise<Buffer>((resolve) => client.ws.once("pong", resolve));
      client.ws.send(Buffer.from("0first "), { binary: true, fin: false });
      client.ws.ping(Buffer.from("are you there"));
      client.ws.send(Buffer.from("second "), { binary: true, fin: false });
      client.ws.send(Buffer.from("third"), { binary: true, fin: true });
      expect((await pong).toString()).toBe("are you there");
      await waitFor("the message at the box", () => box.messages.length === 1);
      expect(box.messages[0]).toEqual({ data: Buffer.from("0first second third"), binary: true });
    } finally {
      await client.close();
    }
  });

  it("sees the attach-ended marker when it straddles two box messages: session ended (1000)", async () => {
    const { client, box } = await t.openReady();
    const cut = 9;
    box.ws.send(Buffer.concat([Buffer.of(0x30), Buffer.from(`bye\r\n${ATTACH_ENDED_MARKER.slice(0, cut)}`)]));
    box.ws.send(Buffer.concat([Buffer.of(0x30), Buffer.from(ATTACH_ENDED_MARKER.slice(cut))]));
    expect(await client.closed).toEqual({ code: 1000, reason: "session ended" });
    await waitFor("the relay to close the box's leg", () => box.ws.readyState === box.ws.CLOSED);
  });

  it("closes a client whose message passes the size limit with 1009, and hangs up the box", async () => {
    const { client, box } = await t.openReady();
    client.ws.send(Buffer.concat([Buffer.of(0x30), Buffer.alloc(1024 * 1024)]));
    expect((await client.closed).code).toBe(1009);
    await waitFor("the box's leg closed", () => box.ws.readyState === box.ws.CLOSED);
    expect(box.messages).toEqual([]);
  });

  it("closes the box's leg with 1009 when a box message passes its size limit, and tells the client", async () => {
    const { client, box } = await t.openReady();
    box.ws.send(Buffer.concat([Buffer.of(0x30), Buffer.alloc(upstreamMaxPayload)]));
    expect(await client.closed).toEqual({ code: 1009, reason: "terminal closed" });
    expect((await box.closed).code).toBe(1009);
  });

  it("closes a client that sends an unmasked frame with 1002 (protocol error), and forwards nothing of it", async () => {
    const { client, box } = await t.openReady();
    // `ws` always masks; write the raw frame under it (a binary "0oops", FIN, no mask bit).
    const raw = (client.ws as unknown as { _socket: import("node:net").Socket })._socket;
    raw.write(Buffer.concat([Buffer.of(0x82, 5), Buffer.from("0oops")]));
    expect((await client.closed).code).toBe(1002);
    await waitFor("the box's leg closed", () => box.ws.readyState === box.ws.CLOSED);
    expect(box.messages).toEqual([]);
  });

  it("neither leg negotiates compression: the upgrade answers carry no permessage-deflate", async () => {
    const { client, box } = await t.openReady();
    try {
      expect(client.ws.extensions).toBe("");
      expect(box.ws.extensions).toBe("");
    } finally {
      await client.close();
    }
  });
});
