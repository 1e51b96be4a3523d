/**
 * The voice gateway stream (runtime/gateway/voice): 60 s of 16 kHz linear16 audio in 100 ms frames, sent
 * as fast as the socket takes it, with an utterance (a final transcript) per second of audio. Through the
 * gateway, each final also becomes a keys action and an audit row before the client hears `Typed`. The
 * baseline is the same audio sent straight to the (fake) Deepgram, as a browser does on the direct path.
 * Figures: audio seconds relayed per wall second (the latency under that load is mostly queueing), and,
 * with 5 s sent at real time, the time from an utterance's last frame to its final answer (`Results`
 * direct, `Typed` through the gateway).
 */
import { WebSocket } from "ws";
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { sessions } from "../store/schema.ts";
import { startFakeDeepgram } from "../test/fake-deepgram.ts";
import { insertWorkspace } from "../test/fixtures.ts";
import { ScriptedDriver } from "../test/scripted-driver.ts";
import { type BenchPostgres, benchControlPlane, fmt, table } from "./harness.ts";

const SECONDS = 60;
const FRAME = 3_200;

/** Sends SECONDS of audio; resolves with wall ms and per-utterance latencies (last frame → `done` message). */
async function run(
  ws: WebSocket,
  isDone: (m: { type?: string; is_final?: boolean }) => boolean,
  seconds = SECONDS,
  realTime = false,
): Promise<{ ms: number; seconds: number; latencies: number[] }> {
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  const sentAt: number[] = [];
  const latencies: number[] = [];
  const all = new Promise<void>((resolve) => {
    ws.on("message", (data) => {
      const m = JSON.parse(String(data));
      if (!isDone(m)) return;
      latencies.push(performance.now() - sentAt[latencies.length]!);
      if (latencies.length === seconds) resolve();
    });
  });
  const frame = Buffer.alloc(FRAME, 1);
  const started = performance.now();
  for (let i = 0; i < (seconds * 32_000) / FRAME; i++) {
    // Stamped before the send: the answer to this frame may come before its write callback.
    if (((i + 1) * FRAME) % 32_000 === 0) sentAt.push(performance.now());
    await new Promise<void>((resolve, reject) => ws.send(frame, (err) => (err ? reject(err) : resolve())));
    // Real time: a frame every 100 ms, as a microphone produces them.
    if (realTime)
      await new Promise((r) => setTimeout(r, Math.max(0, started + (i + 1) * 100 - performance.now())));
  }
  await all;
  const ms = performance.now() - started;
  ws.close();
  return { ms, seconds, latencies };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.95)]!;

export async function benchVoice(pgs: BenchPostgres): Promise<void> {
  const deepgram = await startFakeDeepgram({ transcript: "echo bench", bytesPerUtterance: 32_000 });
  const cp = await benchControlPlane(
    await pgs.database("voice"),
    new ScriptedDriver(),
    {
      DEEPGRAM_API_KEY: deepgram.apiKey,
      BERTH_DEEPGRAM_URL: deepgram.url,
      BERTH_VOICE_DAILY_SECONDS: "86400",
    },
    { runBuilds: false, voice: { maxBytesPerSecond: 1e9, burstBytes: 1e9 } },
  );
  try {
    const { db } = cp.deps.database;
    const owner = await upsertUser(cp.deps.store, LOCAL_OWNER_EXTERNAL_ID, { isAdmin: true });
    const ws = await insertWorkspace(db, owner.userId, { name: "bench", state: "ready" });
    const [session] = await db
      .insert(sessions)
      .values({ workspaceId: ws.id, name: "main", createdById: owner.userId })
      .returning();

    const directly = (seconds?: number, realTime?: boolean) =>
      run(
        new WebSocket(cp.deps.voice.settings.deepgram!.listenUrl(), {
          headers: { authorization: `Token ${deepgram.apiKey}` },
        }),
        (m) => m.type === "Results" && m.is_final === true,
        seconds,
        realTime,
      );
    const throughGateway = async (seconds?: number, realTime?: boolean) => {
      const res = await fetch(`${cp.url}/api/v1/voice/stream-token`, {
        method: "POST",
        headers: {
          authorization: "Bearer bench-token-bench-token-bench-token-bench",
          "content-type": "application/json",
        },
        body: JSON.stringify({ sessionId: session!.id }),
      });
      const { protocols } = (await res.json()) as { protocols: string[] };
      return run(
        new WebSocket(`${cp.url.replace("http", "ws")}/api/v1/voice/stream?mode=send`, protocols),
        (m) => m.type === "Typed",
        seconds,
        realTime,
      );
    };
    const direct = await directly();
    const gateway = await throughGateway();
    const directPaced = await directly(5, true);
    const gatewayPaced = await throughGateway(5, true);

    const row = (name: string, r: { ms: number; seconds: number; latencies: number[] }) => [
      name,
      fmt((r.seconds * 1000) / r.ms, 1),
      fmt(mean(r.latencies), 2),
      fmt(p95(r.latencies), 2),
    ];
    table(
      `voice gateway stream: ${SECONDS} s of linear16 audio, one final per second (fake Deepgram on loopback)`,
      ["path", "audio s per wall s", "last frame → final, mean ms", "p95 ms"],
      [
        row("direct to Deepgram (baseline)", direct),
        row("through /api/v1/voice/stream", gateway),
        row("direct, 5 s at real time", directPaced),
        row("gateway, 5 s at real time", gatewayPaced),
      ],
    );
    console.log(
      `  ratio gateway/direct: throughput ${fmt(direct.ms / gateway.ms, 2)}×; at real time, added latency ${fmt(mean(gatewayPaced.latencies) - mean(directPaced.latencies), 2)} ms per utterance`,
    );
  } finally {
    await cp.close();
    await deepgram.close();
  }
}
