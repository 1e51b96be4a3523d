/**
 * One gateway voice stream: a client's 16 kHz linear16 audio relayed to Deepgram's live endpoint with the
 * control plane's own key, Deepgram's messages relayed back, and each finished utterance (`speech_final`,
 * or `UtteranceEnd` when endpointing never fires in noise) handed to `deliver`, which types it into the
 * session. Both legs have backpressure: past the high-water mark of audio not yet written to Deepgram the
 * client socket is paused; interim results are dropped for a client that does not read (finals never are).
 * Limits: audio seconds per stream and bytes per second (a burst allowance over real time). When the
 * stream ends, the seconds of audio forwarded are recorded once.
 */
import { type RawData, WebSocket } from "ws";
import { LINEAR16_BYTES_PER_SECOND } from "../../domain/voice/deepgram.ts";
import { MAX_TRANSCRIPT_CHARS } from "../../domain/voice/transcript.ts";
import type { Logger } from "../../platform/logger.ts";

export interface VoiceStreamLimits {
  /** Audio seconds one stream may send (further capped by the user's remaining daily quota). */
  maxStreamSeconds: number;
  /** Sustained upload rate allowed, in bytes per second (real time is 32 000). */
  maxBytesPerSecond: number;
  /** Bytes a client may send ahead of that rate (buffered audio after a network stall). */
  burstBytes: number;
  /** Audio buffered towards Deepgram above which the client socket is paused… */
  highWaterMark: number;
  /** …and below which it resumes. */
  lowWaterMark: number;
  /** How long Deepgram may take to accept the connection, and to finish after CloseStream. */
  upstreamTimeoutMs: number;
  /** With no audio for this long, the gateway sends Deepgram a KeepAlive (it closes after 10 s of nothing). */
  keepAliveMs: number;
  /** Wall-clock cap on a stream (a client that keeps a socket open without sending audio). */
  maxWallSeconds: number;
}

export const DEFAULT_VOICE_LIMITS: VoiceStreamLimits = {
  maxStreamSeconds: 300,
  maxBytesPerSecond: 2 * LINEAR16_BYTES_PER_SECOND,
  burstBytes: 10 * LINEAR16_BYTES_PER_SECOND,
  highWaterMark: 256 * 1024,
  lowWaterMark: 64 * 1024,
  upstreamTimeoutMs: 10_000,
  keepAliveMs: 4_000,
  maxWallSeconds: 600,
};

/** Close codes of the voice stream socket (the reason says more). */
export const VoiceClose = {
  DONE: 1000,
  GOING_AWAY: 1001,
  ERROR: 1011,
  BAD_REQUEST: 4400,
  UNAUTHORIZED: 4401,
  VOICE_DISABLED: 4403,
  SESSION_GONE: 4404,
  TOO_LONG: 4408,
  RATE_LIMITED: 4429,
  PROVIDER_UNAVAILABLE: 4502,
} as const;

export interface VoiceStreamDeps {
  client: WebSocket;
  upstreamUrl: string;
  authorization: string;
  limits: VoiceStreamLimits;
  /** Audio seconds this stream may send: the stream limit or what is left of the daily quota. */
  maxSeconds: number;
  /** Types one utterance into the target; its rejection is reported to the client, the stream goes on. */
  deliver: (text: string) => Promise<void>;
  /** Records the stream's audio seconds; called once, after the last delivery. */
  record: (seconds: number, startedAt: Date) => Promise<void>;
  log: Logger;
  onEnd: (stream: VoiceStream) => void;
}

interface DeepgramMessage {
  type?: string;
  is_final?: boolean;
  speech_final?: boolean;
  channel?: { alternatives?: Array<{ transcript?: string }> };
}

export class VoiceStream {
  readonly #d: VoiceStreamDeps;
  readonly #startedAt = new Date();
  readonly #upstream: WebSocket;
  /** Audio (and KeepAlive/Finalize messages) received before Deepgram accepted the connection, in order. */
  #early: Array<Buffer | string> = [];
  #earlyBytes = 0;
  #audioBytes = 0;
  #committed: string[] = [];
  #deliveries: Promise<void> = Promise.resolve();
  #closeSent = false;
  #endSpec: { code: number; reason: string } = { code: VoiceClose.DONE, reason: "stream ended" };
  #finishTimer: NodeJS.Timeout | null = null;
  #keepAlive: NodeJS.Timeout;
  #wallLimit: NodeJS.Timeout;
  #lastAudioAt = Date.now();
  #ended = false;
  #resolveDone!: () => void;
  /** Settles once the stream has ended: transcripts delivered, usage recorded, client closed. */
  readonly done = new Promise<void>((resolve) => {
    this.#resolveDone = resolve;
  });
  /** Interim messages not sent because the client was not reading. */
  droppedInterims = 0;

  constructor(deps: VoiceStreamDeps) {
    this.#d = deps;
    const { client } = deps;
    this.#upstream = new WebSocket(deps.upstreamUrl, {
      headers: { authorization: deps.authorization },
      perMessageDeflate: false,
      handshakeTimeout: deps.limits.upstreamTimeoutMs,
    });
    this.#upstream.on("open", () => {
      for (const item of this.#early) {
        if (typeof item === "string") this.#upstream.send(item);
        else this.#forward(item);
      }
      this.#early = [];
      if (this.#closeSent) this.#upstream.send(JSON.stringify({ type: "CloseStream" }));
    });
    this.#upstream.on("message", (data, isBinary) => {
      if (!isBinary) this.#fromDeepgram(data);
    });
    this.#upstream.on("unexpected-response", (_req, res) => {
      deps.log.warn({ status: res.statusCode }, "the speech provider refused the stream");
      res.resume();
      this.#fail({ code: VoiceClose.PROVIDER_UNAVAILABLE, reason: "speech provider refused the stream" });
    });
    this.#upstream.on("error", (err) => {
      deps.log.warn({ err: String(err) }, "speech provider connection failed");
      this.#fail({ code: VoiceClose.PROVIDER_UNAVAILABLE, reason: "speech provider unavailable" });
    });
    this.#upstream.on("close", () => void this.#end());

    client.on("message", (data, isBinary) => (isBinary ? this.#audio(data) : this.#control(data)));
    // A client that pauses its microphone still has a stream: keep Deepgram's side open meanwhile.
    this.#keepAlive = setInterval(() => {
      if (
        this.#upstream.readyState === WebSocket.OPEN &&
        !this.#closeSent &&
        Date.now() - this.#lastAudioAt >= deps.limits.keepAliveMs
      )
        this.#upstream.send(JSON.stringify({ type: "KeepAlive" }));
    }, deps.limits.keepAliveMs);
    this.#keepAlive.unref();
    this.#wallLimit = setTimeout(
      () => this.stop(VoiceClose.TOO_LONG, `stream open longer than ${deps.limits.maxWallSeconds}s`),
      deps.limits.maxWallSeconds * 1000,
    );
    this.#wallLimit.unref();
    client.on("close", () => this.#closeStream());
    client.on("error", () => this.#closeStream());
  }

  get audioBytes(): number {
    return this.#audioBytes;
  }

  /** Ends the stream from outside (shutdown): Deepgram finishes, the client gets `code`. */
  stop(code: number, reason: string): void {
    this.#endSpec = { code, reason };
    this.#closeStream();
  }

  #audio(data: RawData): void {
    if (this.#closeSent) return;
    const chunk = toBuffer(data);
    const { limits } = this.#d;
    this.#audioBytes += chunk.length;
    this.#lastAudioAt = Date.now();
    const elapsed = (Date.now() - this.#startedAt.getTime()) / 1000;
    if (this.#audioBytes > limits.burstBytes + limits.maxBytesPerSecond * elapsed) {
      this.#endSpec = { code: VoiceClose.RATE_LIMITED, reason: "audio sent faster than real time" };
      this.#audioBytes -= chunk.length;
      this.#closeStream();
      return;
    }
    const max = this.#d.maxSeconds * LINEAR16_BYTES_PER_SECOND;
    const over = this.#audioBytes > max;
    const usable = over ? chunk.subarray(0, Math.max(0, chunk.length - (this.#audioBytes - max))) : chunk;
    if (over) this.#audioBytes = max;
    if (usable.length > 0) {
      if (this.#upstream.readyState === WebSocket.OPEN) this.#forward(usable);
      else {
        this.#early.push(usable);
        this.#earlyBytes += usable.length;
        if (this.#earlyBytes > limits.highWaterMark) this.#d.client.pause();
      }
    }
    if (over) {
      this.#endSpec = { code: VoiceClose.TOO_LONG, reason: `stream limit of ${this.#d.maxSeconds}s reached` };
      this.#closeStream();
    }
  }

  #forward(chunk: Buffer): void {
    const { client, limits } = this.#d;
    this.#upstream.send(chunk, { binary: true }, () => {
      if (client.isPaused && this.#upstream.bufferedAmount <= limits.lowWaterMark) client.resume();
    });
    if (this.#upstream.bufferedAmount > limits.highWaterMark) client.pause();
  }

  #control(data: RawData): void {
    let message: { type?: unknown };
    try {
      message = JSON.parse(toBuffer(data).toString("utf8"));
    } catch {
      return;
    }
    if ((message.type === "KeepAlive" || message.type === "Finalize") && !this.#closeSent) {
      const text = JSON.stringify({ type: message.type });
      if (this.#upstream.readyState === WebSocket.OPEN) this.#upstream.send(text);
      else if (this.#upstream.readyState === WebSocket.CONNECTING) this.#early.push(text);
    } else if (message.type === "CloseStream") {
      this.#closeStream();
    }
  }

  /** Asks Deepgram to flush and close; the stream ends when it does (or after the timeout). */
  #closeStream(): void {
    if (this.#closeSent || this.#ended) return;
    this.#closeSent = true;
    if (this.#d.client.isPaused) this.#d.client.resume();
    if (this.#upstream.readyState === WebSocket.OPEN) {
      this.#upstream.send(JSON.stringify({ type: "CloseStream" }));
    } else if (this.#upstream.readyState !== WebSocket.CONNECTING) {
      return void this.#end();
    }
    this.#finishTimer = setTimeout(() => this.#upstream.terminate(), this.#d.limits.upstreamTimeoutMs);
    this.#finishTimer.unref();
  }

  #fromDeepgram(data: RawData): void {
    const text = toBuffer(data).toString("utf8");
    let message: DeepgramMessage;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const final = message.type !== "Results" || message.is_final === true;
    const { client, limits } = this.#d;
    if (client.readyState === WebSocket.OPEN) {
      if (final || client.bufferedAmount < limits.highWaterMark) client.send(text);
      else this.droppedInterims++;
    }
    if (message.type === "Results" && message.is_final) {
      const transcript = message.channel?.alternatives?.[0]?.transcript?.trim();
      if (transcript) this.#committed.push(transcript);
      if (message.speech_final) this.#flush();
    } else if (message.type === "UtteranceEnd") {
      this.#flush();
    }
  }

  /** Hands the committed text to `deliver`, one utterance after another, and tells the client. */
  #flush(): void {
    const text = this.#committed.join(" ").slice(0, MAX_TRANSCRIPT_CHARS);
    this.#committed = [];
    if (!text) return;
    this.#deliveries = this.#deliveries.then(async () => {
      let reply: Record<string, unknown>;
      try {
        await this.#d.deliver(text);
        reply = { type: "Typed", text };
      } catch (err) {
        const reason = (err as { code?: string }).code ?? "delivery_failed";
        this.#d.log.info({ reason }, "voice transcript not typed");
        reply = { type: "Error", reason, message: (err as Error).message, text };
      }
      if (this.#d.client.readyState === WebSocket.OPEN) this.#d.client.send(JSON.stringify(reply));
    });
  }

  #fail(spec: { code: number; reason: string }): void {
    this.#endSpec = spec;
    this.#upstream.terminate();
    void this.#end();
  }

  async #end(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#finishTimer) clearTimeout(this.#finishTimer);
    clearInterval(this.#keepAlive);
    clearTimeout(this.#wallLimit);
    this.#flush();
    await this.#deliveries;
    const seconds = Math.ceil(this.#audioBytes / LINEAR16_BYTES_PER_SECOND);
    if (seconds > 0) {
      await this.#d.record(seconds, this.#startedAt).catch((err) => {
        this.#d.log.error({ err }, "voice usage not recorded");
      });
    }
    const { client } = this.#d;
    // Read again if backpressure paused it: the client's answer to our close frame must be read, or the
    // socket waits out ws's 30 s close timer (a stream that fails while Deepgram holds its audio).
    if (client.isPaused) client.resume();
    if (client.readyState === WebSocket.OPEN) {
      client.send(JSON.stringify({ type: "StreamEnd", seconds }));
      client.close(this.#endSpec.code, this.#endSpec.reason);
    }
    this.#d.onEnd(this);
    this.#resolveDone();
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
