/**
 * `GET /api/v1/voice/stream` as a WebSocket, for clients that cannot (or should not) hold a Deepgram token:
 * native and mobile apps. The protocol is in the README (Voice → Gateway stream). Admission, all before
 * Deepgram is dialled:
 *   1. an Origin, when there is one (browsers), is one of the web origins — else HTTP 403; native clients
 *      send none, and the token is what admits them;
 *   2. `berth.voice` is offered — else HTTP 400; `?mode=` is `insert` (default) or `send` — else HTTP 400;
 *   From here a refusal completes the handshake and closes with a code and a reason the client can read:
 *   3. the token (`berth.token.<jwt>` entry, minted by `POST /api/v1/voice/stream-token`) verifies and is
 *      spent once — else 4401;
 *   4. voice is configured — else 4403; the user's stream rate and daily quota — else 4429;
 *   5. the session is open and the token's user may type into it — else 4404.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer } from "ws";
import type { VoiceSettings } from "../../domain/voice/service.ts";
import { remainingVoiceSeconds, typeTranscript } from "../../domain/voice/service.ts";
import { NotFound, RateLimited } from "../../platform/errors.ts";
import type { Logger } from "../../platform/logger.ts";
import type { SecretBox } from "../../platform/secret-box.ts";
import { rejectUpgrade, type UpgradeDispatcher } from "../../platform/upgrade-dispatcher.ts";
import { SYSTEM } from "../../store/actors.ts";
import type { Limiter } from "../../store/rate-limit.ts";
import type { AuthorizedStore, Store } from "../../store/store.ts";
import { parseOfferedProtocols } from "../terminal/gateway.ts";
import { TerminalTokens, type TokenRefusal } from "../terminal/tokens.ts";
import { DEFAULT_VOICE_LIMITS, VoiceClose, VoiceStream, type VoiceStreamLimits } from "./stream.ts";

export const VOICE_STREAM_PATH = "/api/v1/voice/stream";
export const VOICE_PROTOCOL = "berth.voice";

export interface VoiceGatewayOptions extends VoiceStreamLimits {
  tokenTtlSeconds: number;
  /** Deepgram tokens and stream tokens a user may mint per window. */
  mintRateLimit: { points: number; durationSeconds: number };
  /** Gateway streams a user may open per window. */
  streamRateLimit: { points: number; durationSeconds: number };
}

export const DEFAULT_VOICE_OPTIONS: VoiceGatewayOptions = {
  ...DEFAULT_VOICE_LIMITS,
  tokenTtlSeconds: 60,
  mintRateLimit: { points: 30, durationSeconds: 60 },
  streamRateLimit: { points: 30, durationSeconds: 60 },
};

type Verdict =
  | { ok: true; scope: AuthorizedStore; sessionId: string; workspaceId: string; maxSeconds: number }
  | { ok: false; code: number; reason: string };

export class VoiceGateway {
  readonly settings: VoiceSettings;
  readonly tokens: TerminalTokens;
  /** Tickets a browser reports its direct stream's seconds with (domain/voice/service.ts recordDirectUsage). */
  readonly usageTickets: TerminalTokens;
  readonly usageTicketTtlSeconds: number;
  readonly options: VoiceGatewayOptions;
  /** Per-user mints of Deepgram and stream tokens (the routes use it). */
  readonly mintLimiter: Limiter;
  readonly #streamLimiter: Limiter;
  readonly #store: Store;
  readonly #log: Logger;
  readonly #allowedOrigins: () => string[];
  readonly #wss: WebSocketServer;
  readonly #streams = new Set<VoiceStream>();
  #closed = false;

  constructor(deps: {
    store: Store;
    secretBox: SecretBox;
    log: Logger;
    settings: VoiceSettings;
    allowedOrigins: () => string[];
    options?: Partial<VoiceGatewayOptions>;
  }) {
    this.options = { ...DEFAULT_VOICE_OPTIONS, ...deps.options };
    this.settings = deps.settings;
    this.#store = deps.store;
    this.#log = deps.log.child({ component: "voice" });
    this.#allowedOrigins = deps.allowedOrigins;
    // The terminal tokens' ledger and format, with a key of its own: a voice ticket opens no terminal.
    this.tokens = new TerminalTokens({
      verifier: deps.store.as(SYSTEM.auth).terminalTokens,
      key: deps.secretBox.deriveKey("voice-stream-token"),
      ttlSeconds: this.options.tokenTtlSeconds,
    });
    // Valid as long as a stream may last, and a minute to report it after.
    this.usageTicketTtlSeconds = this.options.maxStreamSeconds + 60;
    this.usageTickets = new TerminalTokens({
      verifier: deps.store.as(SYSTEM.auth).terminalTokens,
      key: deps.secretBox.deriveKey("voice-usage-ticket"),
      ttlSeconds: this.usageTicketTtlSeconds,
    });
    this.mintLimiter = deps.store.rateLimiter({ name: "voice-token", ...this.options.mintRateLimit });
    this.#streamLimiter = deps.store.rateLimiter({ name: "voice-stream", ...this.options.streamRateLimit });
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: 256 * 1024,
      handleProtocols: (protocols) => (protocols.has(VOICE_PROTOCOL) ? VOICE_PROTOCOL : false),
    });
  }

  /** Streams open in this process. */
  get streams(): ReadonlySet<VoiceStream> {
    return this.#streams;
  }

  register(upgrades: UpgradeDispatcher): void {
    upgrades.register(
      (url) => url.pathname === VOICE_STREAM_PATH,
      (req, socket, head, url) => this.handleUpgrade(req, socket, head, url),
    );
  }

  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): Promise<void> {
    if (this.#closed) return rejectUpgrade(socket, 503, "Service Unavailable");
    if (req.method !== "GET") return rejectUpgrade(socket, 405, "Method Not Allowed");
    const origin = req.headers.origin;
    if (origin !== undefined && !this.#allowedOrigins().some((o) => sameOrigin(o, origin)))
      return rejectUpgrade(socket, 403, "Forbidden");
    const header = req.headers["sec-websocket-protocol"];
    if (!(header ?? "").split(",").some((p) => p.trim() === VOICE_PROTOCOL))
      return rejectUpgrade(socket, 400, "Bad Request", `offer the ${VOICE_PROTOCOL} subprotocol`);
    const mode = url.searchParams.get("mode") ?? "insert";
    if (mode !== "insert" && mode !== "send")
      return rejectUpgrade(socket, 400, "Bad Request", "mode must be insert or send");

    let verdict: Verdict;
    try {
      verdict = await this.#authorize(parseOfferedProtocols(header).token);
    } catch (err) {
      this.#log.error({ err }, "voice stream authorization failed");
      verdict = { ok: false, code: VoiceClose.ERROR, reason: "internal error" };
    }
    if (socket.destroyed) return;
    const ip = req.socket.remoteAddress ?? "";
    this.#wss.handleUpgrade(req, socket, head, (client) => {
      if (!verdict.ok || this.#closed || !this.settings.deepgram) {
        const { code, reason } = verdict.ok
          ? { code: VoiceClose.GOING_AWAY, reason: "shutting down" }
          : verdict;
        this.#log.info({ code, reason }, "voice stream refused");
        client.on("error", () => {});
        client.close(code, reason);
        setTimeout(() => client.terminate(), 2_000).unref();
        return;
      }
      const { scope, sessionId, workspaceId, maxSeconds } = verdict;
      const deepgram = this.settings.deepgram;
      const stream = new VoiceStream({
        client,
        upstreamUrl: deepgram.listenUrl(),
        authorization: deepgram.authorizationHeader,
        limits: this.options,
        maxSeconds,
        deliver: async (text) => {
          await typeTranscript(scope, sessionId, { text, mode }, ip, "stream");
        },
        record: (seconds, startedAt) => scope.voice.recordUsage({ workspaceId, seconds, startedAt }),
        log: this.#log,
        onEnd: (s) => this.#streams.delete(s),
      });
      this.#streams.add(stream);
    });
  }

  async #authorize(token: string | undefined | null): Promise<Verdict> {
    const unauthorized = (why: TokenRefusal): Verdict => ({
      ok: false,
      code: VoiceClose.UNAUTHORIZED,
      reason: `unauthorized: token ${why.replace("_", " ")}`,
    });
    if (token === null) return unauthorized("malformed");
    const checked = await this.tokens.verify(token);
    if (!checked.ok) return unauthorized(checked.refusal);
    const claims = checked.claims;
    if (!(await this.tokens.consume(claims))) return unauthorized("used");
    if (!this.settings.deepgram) {
      return { ok: false, code: VoiceClose.VOICE_DISABLED, reason: "voice is off on this server" };
    }
    try {
      await this.#streamLimiter(claims.userId);
    } catch (err) {
      if (err instanceof RateLimited)
        return {
          ok: false,
          code: VoiceClose.RATE_LIMITED,
          reason: `rate limited; retry in ${err.retryAfterSeconds}s`,
        };
      throw err;
    }
    const actor = await this.#store.as(SYSTEM.auth).users.find(claims.userId);
    if (!actor) return { ok: false, code: VoiceClose.SESSION_GONE, reason: "session gone" };
    const scope = this.#store.as(actor);
    try {
      const { session } = await scope.sessions.get(claims.sessionId);
      if (session.workspaceId !== claims.workspaceId) return unauthorized("wrong_session");
    } catch (err) {
      if (err instanceof NotFound)
        return { ok: false, code: VoiceClose.SESSION_GONE, reason: "session gone" };
      throw err;
    }
    const remaining = await remainingVoiceSeconds(scope, this.settings);
    if (remaining <= 0)
      return { ok: false, code: VoiceClose.RATE_LIMITED, reason: "daily voice quota used up" };
    return {
      ok: true,
      scope,
      sessionId: claims.sessionId,
      workspaceId: claims.workspaceId,
      maxSeconds: Math.min(this.options.maxStreamSeconds, remaining),
    };
  }

  /** Ends every stream (Deepgram flushes, transcripts are typed, usage recorded) and refuses new ones. */
  async close(): Promise<void> {
    this.#closed = true;
    const ending = [...this.#streams].map((s) => {
      s.stop(VoiceClose.GOING_AWAY, "server restarting");
      return s.done;
    });
    await Promise.race([Promise.all(ending), new Promise((r) => setTimeout(r, 5_000).unref())]);
    this.#wss.close();
  }
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin && new URL(b).origin !== "null";
  } catch {
    return false;
  }
}
