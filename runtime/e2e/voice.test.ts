/**
 * Voice input against a fake Deepgram on loopback (runtime/test/fake-deepgram.ts) and a real control plane
 * in local mode with a real box agent and tmux:
 * - `POST /api/v1/voice/token` mints a grant through `/v1/auth/grant` with the server's key and answers the
 *   token, its expiry and the listen URL; the token opens the fake's live socket as `['bearer', token]`;
 * - a transcript posted to a session is typed into its Claude pane by the agent (read back with
 *   capture-pane), Enter only for "send", control characters removed; someone else's session is 404 and
 *   nothing is queued;
 * - a Node client streams a spoken WAV (espeak-ng; a tone without it) through `/api/v1/voice/stream` in
 *   real-time chunks: the transcript lands in the pane and voice_usage holds the stream's seconds;
 * - refusals: no token, an expired or used token, voice off, over the mint rate (429);
 * - the Deepgram key is in no response, log line or served script.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { createLogger } from "../platform/logger.ts";
import { sessions } from "../store/schema.ts";
import { startTestControlPlane, type TestControlPlane } from "../test/control-plane.ts";
import { startFakeDeepgram } from "../test/fake-deepgram.ts";
import { insertWorkspace } from "../test/fixtures.ts";
import { createReadyWorkspace, startLocalControlPlane } from "../test/local-control-plane.ts";
import { waitFor } from "../test/wait.ts";
import { pcmOf, speechWav, tonePcm } from "../test/wav.ts";

const SPOKEN = "list the files in this directory";

/** A ready workspace with one session, and a way to open gateway voice streams into that session. */
async function streamsIntoASession(cp: TestControlPlane, name: string) {
  const { db } = cp.deps.database;
  const owner = await upsertUser(cp.deps.store, LOCAL_OWNER_EXTERNAL_ID);
  const ws = await insertWorkspace(db, owner.userId, { name, state: "ready" });
  const [session] = await db
    .insert(sessions)
    .values({ workspaceId: ws.id, name: "main", createdById: owner.userId })
    .returning();
  const stream = async () => {
    const res = await cp.api("/api/v1/voice/stream-token", {
      method: "POST",
      token: cp.localToken,
      json: { sessionId: session!.id },
    });
    const { protocols } = (await res.json()) as { protocols: string[] };
    const socket = new WebSocket(`${cp.url.replace("http", "ws")}/api/v1/voice/stream`, protocols);
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      socket.on("close", (code, reason) => resolve({ code, reason: String(reason) })),
    );
    socket.on("error", () => {});
    await new Promise((resolve) => socket.once("open", resolve));
    return { socket, closed };
  };
  return { ws, stream };
}

describe("voice input", async () => {
  const deepgram = await startFakeDeepgram({ transcript: "echo voice-stream-42", bytesPerUtterance: 32_000 });
  afterAll(() => deepgram.close());
  const logLines: string[] = [];
  const logger = createLogger(
    "debug",
    new Writable({
      write(chunk, _enc, done) {
        logLines.push(String(chunk));
        done();
      },
    }),
  );
  const cp = await startLocalControlPlane(
    { DEEPGRAM_API_KEY: deepgram.apiKey, BERTH_DEEPGRAM_URL: deepgram.url },
    { start: { logger } },
  );
  const token = cp.localToken;
  const { pool, db } = cp.deps.database;
  const bodies: string[] = [];
  /** An API call whose answer is kept, for the check that the key is in none. */
  const call = async (path: string, init: Parameters<typeof cp.api>[1] = {}) => {
    const res = await cp.api(path, { token, ...init });
    const text = await res.text();
    res.headers.forEach((value) => {
      bodies.push(value);
    });
    bodies.push(text);
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };

  const workspaceId = await createReadyWorkspace(cp, "voice");
  const created = await call(`/api/v1/workspaces/${workspaceId}/sessions`, {
    method: "POST",
    json: { name: "talk" },
  });
  const sessionId: string = created.body.session.id;
  const tmux = (...args: string[]) =>
    execFileSync("tmux", ["-S", cp.agentState(workspaceId)!.tmuxSocket, ...args], { encoding: "utf8" });
  const claudePane = await waitFor(
    "the session's Claude pane",
    () =>
      tmux("list-panes", "-s", "-t", "=talk", "-F", "#{@berth-role} #{pane_id}")
        .split("\n")
        .find((l) => l.startsWith("claude "))
        ?.split(" ")[1],
  );
  const screen = () => tmux("capture-pane", "-p", "-J", "-t", claudePane);
  const clearLine = () => tmux("send-keys", "-t", claudePane, "C-u");
  const input = (text: string, mode?: string, sid = sessionId, wid = workspaceId) =>
    call(`/api/v1/workspaces/${wid}/sessions/${sid}/input`, { method: "POST", json: { text, mode } });
  const actionDone = (id: string) =>
    waitFor("the keys action done", async () => {
      const { rows } = await pool.query("SELECT ok FROM agent_actions WHERE id = $1", [id]);
      return rows[0]?.ok === true;
    });

  it("says voice is on and mints a Deepgram token with the listen URL and parameters", async () => {
    const state = await call("/api/v1/voice");
    expect(state.body).toMatchObject({ enabled: true, dailySeconds: 3600, usedSecondsToday: 0 });
    const minted = await call("/api/v1/voice/token", { method: "POST" });
    expect(minted.status).toBe(201);
    expect(deepgram.grantRequests.at(-1)).toEqual({ ttlSeconds: 30 });
    const url = new URL(minted.body.listenUrl);
    expect(`${url.protocol}//${url.host}${url.pathname}`).toBe(
      `${deepgram.url.replace("http", "ws")}/v1/listen`,
    );
    expect(Object.fromEntries(url.searchParams)).toEqual(minted.body.params);
    expect(minted.body.params).toMatchObject({
      model: "nova-3",
      interim_results: "true",
      endpointing: "300",
      utterance_end_ms: "1000",
      vad_events: "true",
      encoding: "linear16",
      sample_rate: "16000",
      channels: "1",
    });
    expect(minted.body.protocols).toEqual(["bearer", minted.body.token]);
    expect(Date.parse(minted.body.expiresAt)).toBeGreaterThan(Date.now());
    // The token opens the live socket the way a browser does it.
    const ws = new WebSocket(minted.body.listenUrl, minted.body.protocols);
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    expect(deepgram.streams.at(-1)!.auth).toBe("bearer");
    ws.close();
    const audit = await pool.query("SELECT count(*)::int AS n FROM audit_log WHERE action = 'voice.token'");
    expect(audit.rows[0].n).toBe(1);
  });

  it("types a transcript into the Claude pane: Enter only for send, control characters removed", {
    timeout: 60_000,
  }, async () => {
    const sent = await input("echo voice-send-\u001b[31m7\u0007\r\n 1", "send");
    expect(sent.status).toBe(202);
    expect(sent.body).toMatchObject({ typed: "echo voice-send-[31m7 1", enter: true });
    await actionDone(sent.body.actionId);
    // Enter ran it: the output is on a line of its own.
    await waitFor("the command's output", () => screen().split("\n").includes("voice-send-[31m7 1"));

    const inserted = await input("echo voice-insert-8", "insert");
    expect(inserted.body).toMatchObject({ typed: "echo voice-insert-8 ", enter: false });
    await actionDone(inserted.body.actionId);
    await waitFor("the inserted text", () => screen().includes("echo voice-insert-8"));
    // No Enter: it sits on the prompt, not run.
    expect(screen().split("\n")).not.toContain("voice-insert-8");
    clearLine();
  });

  it("refuses someone else's session, a closed one and nothing printable, and queues nothing", async () => {
    const mallory = await upsertUser(cp.deps.store, "user_voice_mallory");
    const theirs = await insertWorkspace(db, mallory.userId, { name: "theirs", state: "ready" });
    const [theirSession] = await db
      .insert(sessions)
      .values({ workspaceId: theirs.id, name: "main", createdById: mallory.userId })
      .returning();
    const before = (await pool.query("SELECT count(*)::int AS n FROM agent_actions")).rows[0].n;

    const other = await input("rm -rf ~", "send", theirSession!.id, theirs.id);
    expect(other.status).toBe(404);
    expect(other.body.error.code).toBe("not_found");
    const mixed = await input("rm -rf ~", "send", theirSession!.id, workspaceId);
    expect(mixed.status).toBe(404);
    const streamTicket = await call("/api/v1/voice/stream-token", {
      method: "POST",
      json: { sessionId: theirSession!.id },
    });
    expect(streamTicket.status).toBe(404);
    const gone = await call(`/api/v1/workspaces/${workspaceId}/sessions`, {
      method: "POST",
      json: { name: "gone" },
    });
    await call(`/api/v1/workspaces/${workspaceId}/sessions/${gone.body.session.id}`, { method: "DELETE" });
    const closed = await input("echo too-late", "send", gone.body.session.id);
    expect(closed.status).toBe(404);
    const empty = await input("\u0007\u001b\r\n", "send");
    expect(empty.status).toBe(400);
    expect(empty.body.error.code).toBe("empty_transcript");
    const long = await input("x".repeat(2001), "insert");
    expect(long.status).toBe(400);
    expect(long.body.error.code).toBe("transcript_too_long");
    const badMode = await input("hello", "shout");
    expect(badMode.status).toBe(400);
    expect(badMode.body.error.message).toContain("mode");
    expect((await pool.query("SELECT count(*)::int AS n FROM agent_actions")).rows[0].n).toBe(before);
  });

  /** Opens the gateway stream with a freshly minted ticket (or the protocols given). */
  const openStream = async (mode: "insert" | "send", protocols?: string[]) => {
    if (!protocols) {
      const ticket = await call("/api/v1/voice/stream-token", { method: "POST", json: { sessionId } });
      expect(ticket.status).toBe(201);
      protocols = ticket.body.protocols as string[];
    }
    const ws = new WebSocket(`${cp.url.replace("http", "ws")}/api/v1/voice/stream?mode=${mode}`, protocols);
    const messages: Array<Record<string, unknown>> = [];
    ws.on("message", (data) => messages.push(JSON.parse(String(data))));
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      ws.on("close", (code, reason) => resolve({ code, reason: String(reason) })),
    );
    return { ws, messages, closed };
  };

  it("relays a WAV streamed in real-time chunks: the transcript is typed and voice_usage holds the seconds", {
    timeout: 60_000,
  }, async () => {
    const spoken = speechWav(SPOKEN, join(mkdtempSync(join(tmpdir(), "berth-voice-")), "speech.wav"));
    const pcm = spoken ? pcmOf(spoken) : tonePcm(2.5);
    const streamsBefore = deepgram.streams.length;
    const { ws, messages, closed } = await openStream("send");
    await new Promise((resolve) => ws.once("open", resolve));
    expect(ws.protocol).toBe("berth.voice");
    // 100 ms chunks, each sent once the previous one has been written (real time is the client's job; the
    // gateway's rate limit allows a burst, so this does not wait on the clock).
    for (let at = 0; at < pcm.length; at += 3200) {
      await new Promise<void>((resolve, reject) =>
        ws.send(pcm.subarray(at, at + 3200), (err) => (err ? reject(err) : resolve())),
      );
    }
    ws.send(JSON.stringify({ type: "KeepAlive" }));
    await waitFor("an interim result", () =>
      messages.find((m) => m.type === "Results" && m.is_final === false),
    );
    await waitFor("the typed transcript", () => messages.find((m) => m.type === "Typed"));
    ws.send(JSON.stringify({ type: "CloseStream" }));
    const end = await closed;
    expect(end.code).toBe(1000);

    const upstream = deepgram.streams[streamsBefore]!;
    expect(upstream.auth).toBe("header");
    expect(upstream.bytes).toBe(pcm.length);
    expect(upstream.keepAlives).toBe(1);
    expect(upstream.closeStreams).toBe(1);
    expect(Object.fromEntries(upstream.params)).toMatchObject({ encoding: "linear16", sample_rate: "16000" });
    expect(messages.map((m) => m.type)).toContain("UtteranceEnd");
    const seconds = Math.ceil(pcm.length / 32_000);
    expect(messages.at(-1)).toEqual({ type: "StreamEnd", seconds });
    await waitFor("the command's output in the pane", () => screen().split("\n").includes("voice-stream-42"));
    const usage = await pool.query("SELECT seconds, workspace_id FROM voice_usage ORDER BY id");
    expect(usage.rows).toEqual([{ seconds, workspace_id: workspaceId }]);
    expect((await call("/api/v1/voice")).body.usedSecondsToday).toBe(seconds);
  });

  it("refuses streams without a valid ticket, and a ticket twice", async () => {
    const none = await openStream("insert", ["berth.voice"]);
    expect(await none.closed).toEqual({ code: 4401, reason: "unauthorized: token missing" });

    const forged = await openStream("insert", ["berth.voice", "berth.token.a.b.c"]);
    expect(await forged.closed).toEqual({ code: 4401, reason: "unauthorized: token invalid" });

    const ownerActor = await upsertUser(cp.deps.store, LOCAL_OWNER_EXTERNAL_ID);
    const owner = ownerActor.userId;
    const ledger = cp.deps.store.as(ownerActor).terminalTokens;
    const stale = await cp.deps.voice.tokens.mint(
      ledger,
      { userId: owner, workspaceId, sessionId },
      Date.now() - 10 * 60_000,
    );
    const expired = await openStream("insert", ["berth.voice", `berth.token.${stale.token}`]);
    expect(await expired.closed).toEqual({ code: 4401, reason: "unauthorized: token expired" });

    const ticket = await call("/api/v1/voice/stream-token", { method: "POST", json: { sessionId } });
    const first = await openStream("insert", ticket.body.protocols);
    await new Promise((resolve) => first.ws.once("open", resolve));
    first.ws.send(JSON.stringify({ type: "CloseStream" }));
    expect((await first.closed).code).toBe(1000);
    const again = await openStream("insert", ticket.body.protocols);
    expect(await again.closed).toEqual({ code: 4401, reason: "unauthorized: token used" });

    // A terminal ticket is not a voice ticket.
    const terminal = await call(`/api/v1/sessions/${sessionId}/terminal-token`, { method: "POST" });
    const wrongKind = await openStream("insert", ["berth.voice", `berth.token.${terminal.body.token}`]);
    expect((await wrongKind.closed).code).toBe(4401);
  });

  it("records a direct stream's reported seconds once, bounded by the time since its ticket was minted", async () => {
    const startedAt = Date.now();
    const minted = await call("/api/v1/voice/token", { method: "POST", json: { sessionId } });
    expect(minted.status).toBe(201);
    const ticket: string = minted.body.usageTicket;
    expect(ticket).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const report = await call("/api/v1/voice/usage", { method: "POST", json: { ticket, seconds: 1000 } });
    expect(report.status).toBe(201);
    const bound = Math.ceil((Date.now() - startedAt) / 1000) + 1;
    expect(report.body.recordedSeconds).toBeLessThanOrEqual(bound);
    const { rows } = await pool.query("SELECT seconds FROM voice_usage ORDER BY id DESC LIMIT 1");
    expect(rows[0].seconds).toBe(report.body.recordedSeconds);
    const again = await call("/api/v1/voice/usage", { method: "POST", json: { ticket, seconds: 5 } });
    expect(again.status).toBe(400);
    expect(again.body.error).toMatchObject({ code: "usage_ticket_invalid", message: "body.ticket: used" });
    const forged = await call("/api/v1/voice/usage", {
      method: "POST",
      json: { ticket: "a.b.c", seconds: 5 },
    });
    expect(forged.status).toBe(400);
  });

  it("never lets the Deepgram key out: responses, logs, served scripts", async () => {
    const page = await fetch(cp.url);
    const html = await page.text();
    const scripts = [...html.matchAll(/src="([^"]+\.js)"/g)].map((m) => m[1]!);
    for (const src of scripts) bodies.push(await (await fetch(new URL(src, cp.url))).text());
    page.headers.forEach((value) => {
      bodies.push(value);
    });
    bodies.push(html);
    expect(bodies.length).toBeGreaterThan(10);
    for (const text of [...bodies, ...logLines]) expect(text).not.toContain(deepgram.apiKey);
    // Nothing of the box's (its state, its logs) holds it either: the key never reaches the box.
    const run = join(cp.workspacesRoot, workspaceId, "run");
    for (const file of readdirSync(run, { withFileTypes: true }).filter((f) => f.isFile()))
      expect(readFileSync(join(run, file.name), "utf8")).not.toContain(deepgram.apiKey);
  });
});

describe("voice turned off, and the mint rate", async () => {
  const off = await startTestControlPlane({}, { runBuilds: false });
  const deepgram = await startFakeDeepgram();
  afterAll(() => deepgram.close());
  const limited = await startTestControlPlane(
    { DEEPGRAM_API_KEY: deepgram.apiKey, BERTH_DEEPGRAM_URL: deepgram.url },
    { runBuilds: false, voice: { mintRateLimit: { points: 2, durationSeconds: 600 } } },
  );

  it("without DEEPGRAM_API_KEY voice is off and the answer says how to turn it on", async () => {
    const state = await (await off.api("/api/v1/voice", { token: off.localToken })).json();
    expect(state).toMatchObject({ enabled: false });
    expect(state.hint).toContain("DEEPGRAM_API_KEY");
    const res = await off.api("/api/v1/voice/token", { method: "POST", token: off.localToken });
    expect(res.status).toBe(409);
    const body = await res.json();
    expect(body.error.code).toBe("voice_disabled");
    expect(body.error.message).toContain("DEEPGRAM_API_KEY");
  });

  it("answers 429 with Retry-After past the per-user mint rate", async () => {
    const mint = () => limited.api("/api/v1/voice/token", { method: "POST", token: limited.localToken });
    expect((await mint()).status).toBe(201);
    expect((await mint()).status).toBe(201);
    const over = await mint();
    expect(over.status).toBe(429);
    expect(Number(over.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(deepgram.grantRequests).toHaveLength(2);
  });

  it("a wrong key at Deepgram is 503, not the key", async () => {
    const wrong = await startTestControlPlane(
      { DEEPGRAM_API_KEY: "dg_wrong_key_0123456789", BERTH_DEEPGRAM_URL: deepgram.url },
      { runBuilds: false },
    );
    const res = await wrong.api("/api/v1/voice/token", { method: "POST", token: wrong.localToken });
    expect(res.status).toBe(503);
    expect((await res.json()).error.code).toBe("voice_provider_refused");
  });
});

describe("the gateway stream's limits", async () => {
  const deepgram = await startFakeDeepgram({ bytesPerUtterance: 1_000_000 });
  afterAll(() => deepgram.close());
  const cp = await startTestControlPlane(
    { DEEPGRAM_API_KEY: deepgram.apiKey, BERTH_DEEPGRAM_URL: deepgram.url },
    {
      runBuilds: false,
      voice: { maxStreamSeconds: 1, burstBytes: 64_000, maxBytesPerSecond: 64_000, keepAliveMs: 50 },
    },
  );
  const { pool } = cp.deps.database;
  const { ws, stream } = await streamsIntoASession(cp, "limits");

  it("ends a stream at its length limit: Deepgram gets exactly that much audio, voice_usage its seconds", async () => {
    const before = deepgram.streams.length;
    const { socket, closed } = await stream();
    const pcm = tonePcm(1.5);
    for (let at = 0; at < pcm.length; at += 3200) socket.send(pcm.subarray(at, at + 3200));
    expect(await closed).toEqual({ code: 4408, reason: "stream limit of 1s reached" });
    expect(deepgram.streams[before]!.bytes).toBe(32_000);
    expect(deepgram.streams[before]!.closeStreams).toBe(1);
    const usage = await pool.query("SELECT seconds FROM voice_usage WHERE workspace_id = $1", [ws.id]);
    expect(usage.rows).toEqual([{ seconds: 1 }]);
  });

  it("keeps Deepgram's side open with KeepAlive while the client sends no audio", async () => {
    const before = deepgram.streams.length;
    const { socket, closed } = await stream();
    const upstream = await waitFor("the upstream stream", () => deepgram.streams[before]);
    await waitFor("a KeepAlive from the gateway", () => upstream.keepAlives >= 2);
    socket.send(JSON.stringify({ type: "CloseStream" }));
    expect((await closed).code).toBe(1000);
    expect(upstream.bytes).toBe(0);
  });

  it("ends a stream sent faster than the byte rate allows (beyond the burst)", async () => {
    await pool.query("DELETE FROM voice_usage");
    const { socket, closed } = await stream();
    socket.send(Buffer.alloc(200_000));
    expect(await closed).toEqual({ code: 4429, reason: "audio sent faster than real time" });
  });
});

describe("a speech provider that never answers", async () => {
  const deepgram = await startFakeDeepgram({ holdHandshake: true });
  afterAll(() => deepgram.close());
  const cp = await startTestControlPlane(
    { DEEPGRAM_API_KEY: deepgram.apiKey, BERTH_DEEPGRAM_URL: deepgram.url },
    { runBuilds: false, voice: { upstreamTimeoutMs: 1_000, highWaterMark: 4_096, lowWaterMark: 1_024 } },
  );
  const { stream } = await streamsIntoASession(cp, "hung provider");

  it("closes at once a client it stopped reading while audio waited for the handshake", async () => {
    const { socket, closed } = await stream();
    let ended: { code: number; reason: string } | null = null;
    void closed.then((end) => {
      ended = end;
    });
    // Past the high-water mark while Deepgram has not answered: the gateway stops reading this client.
    socket.send(Buffer.alloc(16_000));
    // The handshake times out and the stream fails. The client's answer to the close frame must still be
    // read: left paused, the socket would wait for ws's 30 s close timer, and so would the client.
    const end = await waitFor("the stream's close", () => ended, 10_000);
    expect(end).toEqual({ code: 4502, reason: "speech provider unavailable" });
    expect(cp.deps.voice.streams.size).toBe(0);
  });
});
