/**
 * The control plane's side of Deepgram (notes/protocols.md §6): minting short-lived grant tokens with the
 * server's API key, and the live-transcription URL both the browser and the gateway stream use. The key is
 * only ever sent to Deepgram, in an Authorization header; it never appears in an answer, a URL or a log.
 */
import { Unavailable } from "../../platform/errors.ts";

/** Live parameters: interim results for the editable text, endpointing and UtteranceEnd to know when to send. */
export const LISTEN_PARAMS: Readonly<Record<string, string>> = {
  model: "nova-3",
  interim_results: "true",
  smart_format: "true",
  endpointing: "300",
  utterance_end_ms: "1000",
  vad_events: "true",
};

/** Raw PCM as both clients capture it: 16 kHz, 16-bit little-endian, mono. */
export const LINEAR16_PARAMS: Readonly<Record<string, string>> = {
  encoding: "linear16",
  sample_rate: "16000",
  channels: "1",
};

/** Bytes of one second of LINEAR16_PARAMS audio. */
export const LINEAR16_BYTES_PER_SECOND = 16_000 * 2;

/** Grant tokens live this long: long enough to connect, which is all they are checked for. */
export const GRANT_TTL_SECONDS = 30;

export interface DeepgramGrant {
  accessToken: string;
  expiresInSeconds: number;
}

export class DeepgramClient {
  readonly #apiKey: string;
  readonly #baseUrl: string;

  constructor(opts: { apiKey: string; baseUrl: string }) {
    this.#apiKey = opts.apiKey;
    this.#baseUrl = opts.baseUrl.replace(/\/+$/, "");
  }

  /** The live endpoint with the standard parameters (and linear16 ones), as a wss:// (or ws://) URL. */
  listenUrl(extra: Readonly<Record<string, string>> = LINEAR16_PARAMS): string {
    const url = new URL(`${this.#baseUrl}/v1/listen`);
    url.protocol = url.protocol === "http:" ? "ws:" : "wss:";
    for (const [k, v] of Object.entries({ ...LISTEN_PARAMS, ...extra })) url.searchParams.set(k, v);
    return url.toString();
  }

  /** The header the gateway stream authenticates with (server to server; browsers use a grant token). */
  get authorizationHeader(): string {
    return `Token ${this.#apiKey}`;
  }

  /** A short-lived token for one client's direct connection (`POST /v1/auth/grant`). */
  async grant(ttlSeconds = GRANT_TTL_SECONDS): Promise<DeepgramGrant> {
    let res: Response;
    try {
      res = await fetch(`${this.#baseUrl}/v1/auth/grant`, {
        method: "POST",
        headers: { authorization: this.authorizationHeader, "content-type": "application/json" },
        body: JSON.stringify({ ttl_seconds: ttlSeconds }),
        signal: AbortSignal.timeout(10_000),
      });
    } catch {
      throw new Unavailable("voice_provider_unreachable", "the speech provider could not be reached");
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new Unavailable("voice_provider_refused", `the speech provider refused a token (${res.status})`);
    }
    const body = (await res.json().catch(() => null)) as {
      access_token?: unknown;
      expires_in?: unknown;
    } | null;
    if (typeof body?.access_token !== "string" || typeof body.expires_in !== "number") {
      throw new Unavailable("voice_provider_refused", "the speech provider answered without a token");
    }
    return { accessToken: body.access_token, expiresInSeconds: body.expires_in };
  }
}
