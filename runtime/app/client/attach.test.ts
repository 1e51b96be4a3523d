/**
 * `attachTerminal` against a fake control plane: the terminal-token route and a relay whose behaviour each
 * test scripts per connection (refuse after the handshake as the real relay does, send output, close).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline/promises";
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { type WebSocket, WebSocketServer } from "ws";
import { encodeServerMessage, ServerCommand } from "../../../box/terminal/protocol.ts";
import { waitFor } from "../../test/wait.ts";
import { ApiClient } from "./api.ts";
import { attachTerminal } from "./attach.ts";

interface FakeRelay {
  api: ApiClient;
  /** Terminal sockets opened so far. */
  connections: () => number;
  /** Input bytes the relay received (the INPUT command stripped). */
  input: () => string;
  close: () => Promise<void>;
}

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/**
 * `onToken(n)` answers the n-th mint (1-based) with a status; `onSocket(ws, n)` handles the n-th terminal
 * socket once it is open.
 */
async function fakeRelay(
  onSocket: (ws: WebSocket, n: number) => void,
  onToken: (n: number) => number = () => 201,
): Promise<FakeRelay> {
  let mints = 0;
  let sockets = 0;
  let input = "";
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    if (req.method === "POST" && req.url === "/api/v1/sessions/s1/terminal-token") {
      const status = onToken(++mints);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(
        JSON.stringify(
          status === 201
            ? { protocols: ["tty", "berth.token.t"] }
            : { error: { code: "invalid_transition", message: "the workspace is hibernated" } },
        ),
      );
      return;
    }
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ server, path: "/api/v1/sessions/s1/terminal" });
  wss.on("connection", (ws) => {
    const n = ++sockets;
    ws.on("message", (data: Buffer) => {
      if (data[0] === 0x30) input += data.subarray(1).toString();
    });
    onSocket(ws, n);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const close = async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  closers.push(close);
  return {
    api: new ApiClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, "token"),
    connections: () => sockets,
    input: () => input,
    close,
  };
}

/** A user's terminal: stdin a TTY in raw mode or not, as the client sets it. */
function fakeTerminal() {
  const stdin = Object.assign(new PassThrough(), {
    isTTY: true,
    isRaw: false,
    setRawMode(mode: boolean) {
      stdin.isRaw = mode;
      return stdin;
    },
  });
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let screen = "";
  stdout.on("data", (d) => (screen += d));
  let notes = "";
  stderr.on("data", (d) => (notes += d));
  return {
    io: {
      stdin: stdin as unknown as NodeJS.ReadStream,
      stdout: stdout as unknown as NodeJS.WriteStream,
      stderr: stderr as unknown as NodeJS.WriteStream,
    },
    stdin,
    screen: () => screen,
    notes: () => notes,
  };
}

/** Attaches with two attempts allowed after a failure; `settled` says whether it has ended (given up). */
function attachGivingUpAfterTwo(
  relay: Awaited<ReturnType<typeof fakeRelay>>,
  term: ReturnType<typeof fakeTerminal>,
): { attached: Promise<number>; settled: () => boolean } {
  let settled = false;
  const attached = attachTerminal(relay.api, term.io, {
    sessionId: "s1",
    sessionName: "main",
    onAsleep: async () => true,
    maxAttempts: 2,
  }).finally(() => {
    settled = true;
  });
  attached.catch(() => {});
  return { attached, settled: () => settled };
}

describe("attach", () => {
  it("backs off and gives up when the relay refuses every socket after the handshake", async () => {
    // The real relay completes the handshake before it refuses (the box is unreachable, rate limits):
    // an open socket is no proof the terminal works, so it must not reset the count of failures.
    const relay = await fakeRelay((ws) => ws.close(4502, "box unreachable"));
    const term = fakeTerminal();
    const { attached, settled } = attachGivingUpAfterTwo(relay, term);
    await waitFor(
      "the client to give up, or to retry past its limit",
      () => settled() || relay.connections() > 3,
    );
    expect(relay.connections()).toBe(3);
    await expect(attached).rejects.toThrow(/gave up reconnecting \(4502 box unreachable\)/);
    expect(term.stdin.isRaw).toBe(false);
  });

  it("counts failures again from zero once a socket has carried the terminal", async () => {
    // Sockets 1, 2, 4 and 5 are refused; socket 3 works (output), then drops.
    const relay = await fakeRelay((ws, n) => {
      if (n === 3) ws.send(encodeServerMessage(ServerCommand.OUTPUT, "prompt$ "));
      ws.close(4502, "box unreachable");
    });
    const term = fakeTerminal();
    const { attached, settled } = attachGivingUpAfterTwo(relay, term);
    await waitFor(
      "the client to give up, or to retry past its limit",
      () => settled() || relay.connections() > 5,
    );
    await expect(attached).rejects.toThrow(/gave up reconnecting/);
    expect(relay.connections()).toBe(5);
    expect(term.screen()).toContain("prompt$ ");
  });

  it("takes keys again after asking to wake a box that fell asleep under it", async () => {
    // Socket 1 works, then the box hibernates (4503); after the wake, socket 2 is the terminal again.
    const relay = await fakeRelay((ws, n) => {
      ws.send(encodeServerMessage(ServerCommand.OUTPUT, n === 1 ? "before$ " : "awake$ "));
      if (n === 1) ws.close(4503, "box asleep");
    });
    const term = fakeTerminal();
    const attached = attachTerminal(relay.api, term.io, {
      sessionId: "s1",
      sessionName: "main",
      // As `berth attach` asks (main.ts): a readline prompt on the same stdin, which pauses it on close.
      onAsleep: async () => {
        const rl = createInterface({ input: term.io.stdin, output: term.io.stderr });
        try {
          return /^(y|yes|)$/i.test((await rl.question("Wake it? [Y/n] ")).trim());
        } finally {
          rl.close();
        }
      },
    });
    await waitFor("the wake offer", () => term.notes().includes("Wake it?"));
    term.stdin.write("y\n");
    await waitFor("the terminal after the wake", () => term.screen().includes("awake$ "));
    expect(term.stdin.isRaw).toBe(true);
    term.stdin.write("echo hi\r");
    await waitFor("the keys to reach the box", () => relay.input().includes("echo hi\r"), 10_000);
    term.stdin.write("\x1dd");
    expect(await attached).toBe(0);
  });
});
