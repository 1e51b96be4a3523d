/**
 * The browser's direct stream to Deepgram (README → Voice input): a grant token minted by the control
 * plane, `new WebSocket(listenUrl, ["bearer", token])`, the microphone from getUserMedia downsampled to
 * 16 kHz linear16, `KeepAlive` while no audio flows, `CloseStream` at the end. It reports interim text,
 * committed (is_final) text, and utterance ends (`speech_final`, or `UtteranceEnd` as a fallback); what to
 * do with them is the caller's business.
 */
import { api } from "../api.ts";

export interface VoiceToken {
  token: string;
  expiresAt: string;
  listenUrl: string;
  protocols: [string, string];
  usageTicket?: string;
}

export interface StreamEvents {
  /** The words so far of the current segment (may still change). */
  interim(text: string): void;
  /** A segment that will not change any more. */
  final(text: string): void;
  /** The speaker paused: what is committed is an utterance. */
  utteranceEnd(): void;
  /** The stream failed; `message` is for people. */
  error(message: string): void;
}

const KEEPALIVE_EVERY_MS = 4_000;
const TARGET_RATE = 16_000;

/** Float samples at `rate` → 16 kHz signed 16-bit little-endian (averaging, a cheap low-pass). */
export function toLinear16(input: Float32Array, rate: number): ArrayBuffer {
  const ratio = rate / TARGET_RATE;
  const n = Math.floor(input.length / ratio);
  const out = new DataView(new ArrayBuffer(n * 2));
  for (let i = 0; i < n; i++) {
    const from = Math.floor(i * ratio);
    const to = Math.min(input.length, Math.floor((i + 1) * ratio));
    let sum = 0;
    for (let j = from; j < to; j++) sum += input[j]!;
    const v = Math.max(-1, Math.min(1, sum / Math.max(1, to - from)));
    out.setInt16(i * 2, v < 0 ? v * 0x8000 : v * 0x7fff, true);
  }
  return out.buffer;
}

function micError(err: unknown): string {
  const name = (err as { name?: string }).name;
  if (name === "NotAllowedError" || name === "SecurityError")
    return "Microphone access was denied. Allow the microphone for this site in the browser's settings.";
  if (name === "NotFoundError") return "No microphone was found.";
  if (name === "NotReadableError") return "The microphone is in use by another application.";
  return "The microphone could not be started.";
}

export class DeepgramStream {
  readonly #events: StreamEvents;
  #ws: WebSocket | null = null;
  #media: MediaStream | null = null;
  #audio: AudioContext | null = null;
  #keepAlive: ReturnType<typeof setInterval> | null = null;
  #lastAudioAt = 0;
  #stopping = false;
  /** Bytes of audio sent (for the UI and tests). */
  bytesSent = 0;

  constructor(events: StreamEvents) {
    this.#events = events;
  }

  #usageTicket: string | undefined;

  /** Mints a token, opens the microphone and the socket; rejects with a message for people. */
  async start(sessionId: string): Promise<void> {
    const token = await api<VoiceToken>("/api/v1/voice/token", { method: "POST", body: { sessionId } });
    this.#usageTicket = token.usageTicket;
    // stop() may come while this waits (the page was left): from then on nothing may be opened, or the
    // microphone and the socket (kept up by KeepAlive) would run on with nobody to stop them.
    if (this.#stopping) return;
    try {
      this.#media = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
      });
    } catch (err) {
      throw new Error(micError(err));
    }
    if (this.#stopping) return this.#release();
    const ws = new WebSocket(token.listenUrl, token.protocols);
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => {
        this.#release();
        reject(
          new Error(
            Date.parse(token.expiresAt) < Date.now()
              ? "The voice token expired before the connection opened. Try again."
              : "Could not reach the speech service. Check your connection and try again.",
          ),
        );
      };
    });
    ws.onmessage = (e) => this.#message(e.data);
    ws.onerror = null;
    ws.onclose = (e) => {
      if (!this.#stopping) this.#events.error(`The speech service closed the connection (${e.code}).`);
      this.#release();
    };
    const audio = new AudioContext();
    this.#audio = audio;
    const source = audio.createMediaStreamSource(this.#media);
    // ScriptProcessorNode is deprecated but needs no separate worklet module (which the CSP would have to
    // allow); 4096 frames at 48 kHz is ~85 ms per message.
    const processor = audio.createScriptProcessor(4096, 1, 1);
    processor.onaudioprocess = (e) => {
      if (this.#ws?.readyState !== WebSocket.OPEN || this.#stopping) return;
      const pcm = toLinear16(e.inputBuffer.getChannelData(0), audio.sampleRate);
      this.#ws.send(pcm);
      this.bytesSent += pcm.byteLength;
      this.#lastAudioAt = Date.now();
    };
    source.connect(processor);
    processor.connect(audio.destination);
    this.#lastAudioAt = Date.now();
    // Deepgram closes a socket that gets nothing for 10 s: while no audio flows, say we are still here.
    this.#keepAlive = setInterval(() => {
      if (this.#ws?.readyState === WebSocket.OPEN && Date.now() - this.#lastAudioAt >= KEEPALIVE_EVERY_MS)
        this.#ws.send(JSON.stringify({ type: "KeepAlive" }));
    }, KEEPALIVE_EVERY_MS);
  }

  /** Stops the microphone, asks Deepgram to flush (CloseStream) and resolves once it has closed. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#stopCapture();
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return this.#release();
    ws.send(JSON.stringify({ type: "CloseStream" }));
    await new Promise<void>((resolve) => {
      const done = () => resolve();
      ws.addEventListener("close", done);
      setTimeout(done, 5_000);
    });
    this.#release();
  }

  #message(data: unknown): void {
    if (typeof data !== "string") return;
    let m: {
      type?: string;
      is_final?: boolean;
      speech_final?: boolean;
      channel?: { alternatives?: Array<{ transcript?: string }> };
    };
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    if (m.type === "Results") {
      const text = m.channel?.alternatives?.[0]?.transcript ?? "";
      if (m.is_final) {
        if (text) this.#events.final(text);
        this.#events.interim("");
        if (m.speech_final) this.#events.utteranceEnd();
      } else {
        this.#events.interim(text);
      }
    } else if (m.type === "UtteranceEnd") {
      this.#events.utteranceEnd();
    }
  }

  #stopCapture(): void {
    if (this.#keepAlive) clearInterval(this.#keepAlive);
    this.#keepAlive = null;
    for (const track of this.#media?.getTracks() ?? []) track.stop();
    this.#media = null;
    void this.#audio?.close().catch(() => {});
    this.#audio = null;
  }

  #release(): void {
    this.#stopCapture();
    // The seconds streamed, for the user's quota and billing (the server bounds them by the clock).
    const ticket = this.#usageTicket;
    this.#usageTicket = undefined;
    if (ticket && this.bytesSent > 0) {
      api("/api/v1/voice/usage", {
        method: "POST",
        body: { ticket, seconds: Math.ceil(this.bytesSent / (TARGET_RATE * 2)) },
      }).catch(() => {});
    }
    if (this.#ws && this.#ws.readyState <= WebSocket.OPEN) this.#ws.close();
    this.#ws = null;
  }
}
