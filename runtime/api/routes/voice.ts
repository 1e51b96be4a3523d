/**
 * Voice input (README → Voice):
 * - `GET /api/v1/voice`: whether voice is on (and how to turn it on), today's seconds and the quota.
 * - `POST /api/v1/voice/token`: a short-lived Deepgram token for the browser's direct stream, with the
 *   exact listen URL and parameters; 409 `voice_disabled` without DEEPGRAM_API_KEY, 429 past the mint rate.
 * - `POST /api/v1/voice/usage` `{ticket, seconds}`: the direct stream's seconds, reported by the client with
 *   the single-use ticket its token came with (`{sessionId}` in the token request), bounded by the clock.
 * - `POST /api/v1/voice/stream-token` `{sessionId}`: the single-use ticket to the gateway stream.
 * - `POST /api/v1/workspaces/:id/sessions/:sessionId/input` `{text, mode}`: types a transcript into the
 *   session's Claude pane ("send" presses Enter); someone else's session is 404 and nothing is typed.
 */
import { z } from "zod";
import {
  issueStreamToken,
  issueVoiceToken,
  recordDirectUsage,
  remainingVoiceSeconds,
  typeTranscript,
  VOICE_DISABLED_HINT,
} from "../../domain/voice/service.ts";
import { MAX_TRANSCRIPT_CHARS } from "../../domain/voice/transcript.ts";
import { TOKEN_PROTOCOL_PREFIX } from "../../gateway/terminal/gateway.ts";
import { VOICE_PROTOCOL, VOICE_STREAM_PATH } from "../../gateway/voice/gateway.ts";
import { VoiceClose } from "../../gateway/voice/stream.ts";
import { NotFound } from "../../platform/errors.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";
import { doc } from "../openapi/doc.ts";
import type { WebSocketDoc } from "../openapi/document.ts";

const inputBody = z
  .object({
    // The cap is checked again after control characters are removed (domain/voice/service.ts).
    text: z
      .string()
      .min(1)
      .max(MAX_TRANSCRIPT_CHARS * 2),
    mode: z.enum(["insert", "send"]).default("insert"),
  })
  .strict();

const streamTokenBody = z.object({ sessionId: z.uuid() }).strict();
const tokenBody = z.object({ sessionId: z.uuid().optional() }).strict();
const usageBody = z
  .object({ ticket: z.string().min(1).max(2048), seconds: z.int().min(0).max(86_400) })
  .strict();

const VoiceStatus = z.object({
  enabled: z.boolean(),
  hint: z.string().optional().describe("when voice is off: how to turn it on"),
  dailySeconds: z.int().describe("voice seconds each user has per UTC day"),
  usedSecondsToday: z.int(),
  stream: z
    .object({ path: z.string(), protocol: z.string() })
    .describe("the gateway stream (WebSocket) and the subprotocol it answers"),
});

const DirectToken = z.object({
  token: z.string().describe("a short-lived Deepgram access token"),
  expiresAt: z.iso.datetime(),
  listenUrl: z.string().describe("Deepgram's live endpoint with every parameter (16 kHz linear16)"),
  params: z.record(z.string(), z.string()).describe("the parameters listenUrl carries"),
  protocols: z.array(z.string()).describe("offer these as the WebSocket's subprotocols"),
  usageTicket: z
    .string()
    .optional()
    .describe("with a sessionId: the single-use ticket to report the stream's seconds with"),
});

const StreamToken = z.object({
  token: z.string(),
  expiresAt: z.iso.datetime(),
  path: z.string().describe("the gateway stream's path"),
  protocols: z.array(z.string()).describe("offer exactly these as the WebSocket's subprotocols"),
});

/** The gateway stream (runtime/gateway/voice/gateway.ts) as the document describes it; Koa never sees it. */
export const voiceSocketDoc: WebSocketDoc = {
  path: VOICE_STREAM_PATH,
  summary: "Voice input through the control plane (native and mobile clients)",
  description:
    "Mint a ticket (POST /api/v1/voice/stream-token) and offer its `protocols` (`berth.voice`, " +
    "`berth.token.<token>`); query `mode=insert|send` (default insert). A browser's Origin must be a web " +
    "origin (else 403); without `berth.voice` or with another mode, 400. Send binary frames of raw PCM " +
    '(16 kHz, 16-bit little-endian, mono) and text frames `{"type":"KeepAlive"}`, `{"type":"Finalize"}`, ' +
    '`{"type":"CloseStream"}`. The server sends Deepgram\'s messages (`Results`, `SpeechStarted`, ' +
    '`UtteranceEnd`, `Metadata`), `{"type":"Typed","text"}` after each utterance is typed into the ' +
    'session, `{"type":"Error","reason","message","text"}` when one could not be, and last ' +
    '`{"type":"StreamEnd","seconds"}`. A refusal after the handshake closes with a code below.',
  subprotocols: [VOICE_PROTOCOL, "berth.token.<token>"],
  closeCodes: {
    [VoiceClose.DONE]: "the stream ended (after CloseStream)",
    [VoiceClose.GOING_AWAY]: "this control plane is restarting: reconnect",
    [VoiceClose.ERROR]: "internal error",
    [VoiceClose.UNAUTHORIZED]: "ticket missing, invalid, expired or used: mint another",
    [VoiceClose.VOICE_DISABLED]: "voice is off on this server",
    [VoiceClose.SESSION_GONE]: "the session is closed or not yours",
    [VoiceClose.TOO_LONG]:
      "stream limit reached (seconds of audio, what is left of the daily quota, or wall time)",
    [VoiceClose.RATE_LIMITED]: "too many streams, daily quota used up, or audio sent too fast",
    [VoiceClose.PROVIDER_UNAVAILABLE]: "the speech provider refused the stream or could not be reached",
  },
};

export function voiceRoutes(router: ApiRouter, deps: AppDeps): void {
  const voice = deps.voice;

  const statusDoc = doc({
    summary: "Whether voice input is on, and today's seconds against the daily quota",
    responses: { 200: VoiceStatus },
  });
  router.get("/api/v1/voice", statusDoc, async (ctx) => {
    const enabled = voice.settings.deepgram !== null;
    const remaining = await remainingVoiceSeconds(ctx.state.scope, voice.settings);
    ctx.body = {
      enabled,
      ...(enabled ? {} : { hint: VOICE_DISABLED_HINT }),
      dailySeconds: voice.settings.dailySeconds,
      usedSecondsToday: voice.settings.dailySeconds - remaining,
      stream: { path: VOICE_STREAM_PATH, protocol: VOICE_PROTOCOL },
    };
  });

  const tokenDoc = doc({
    summary: "Mint a short-lived Deepgram token for streaming to Deepgram directly (browsers)",
    description:
      "409 `voice_disabled` without DEEPGRAM_API_KEY, 409 `voice_quota_exhausted` when today's seconds " +
      "are used up, 429 past the mint rate, 503 when Deepgram refuses the grant. With `sessionId` (404 if " +
      "not yours) the answer carries a `usageTicket` for POST /api/v1/voice/usage.",
    body: tokenBody,
    responses: { 201: DirectToken },
    errors: [404, 409, 503],
  });
  router.post("/api/v1/voice/token", tokenDoc, async (ctx) => {
    const { sessionId } = parseInput(tokenBody, ctx.request.body ?? {});
    const minted = await issueVoiceToken(
      ctx.state.scope,
      { settings: voice.settings, limit: voice.mintLimiter, tickets: voice.usageTickets },
      ctx.ip,
      sessionId,
    );
    ctx.set("Cache-Control", "no-store");
    ctx.status = 201;
    ctx.body = { ...minted, expiresAt: minted.expiresAt.toISOString() };
  });

  const usageDoc = doc({
    summary: "Report a direct stream's seconds with its single-use ticket",
    description:
      "The seconds recorded are at most the time since the ticket was minted and the stream limit; a " +
      "ticket that is invalid, someone else's or used is 400 `usage_ticket_invalid`.",
    body: usageBody,
    responses: { 201: z.object({ recordedSeconds: z.int() }) },
    errors: [404],
  });
  router.post("/api/v1/voice/usage", usageDoc, async (ctx) => {
    const report = parseInput(usageBody, ctx.request.body ?? {});
    const seconds = await recordDirectUsage(
      ctx.state.scope,
      {
        tickets: voice.usageTickets,
        ticketTtlSeconds: voice.usageTicketTtlSeconds,
        maxStreamSeconds: voice.options.maxStreamSeconds,
      },
      report,
    );
    ctx.status = 201;
    ctx.body = { recordedSeconds: seconds };
  });

  const streamTokenDoc = doc({
    summary: "Mint a one-use ticket for the voice gateway stream (WebSocket) into a session",
    description:
      "404 for a session that is closed or not yours; 409 when voice is off or the quota is used up.",
    body: streamTokenBody,
    responses: { 201: StreamToken },
    errors: [404, 409],
  });
  router.post("/api/v1/voice/stream-token", streamTokenDoc, async (ctx) => {
    const { sessionId } = parseInput(streamTokenBody, ctx.request.body ?? {});
    const minted = await issueStreamToken(
      ctx.state.scope,
      { settings: voice.settings, tokens: voice.tokens, limit: voice.mintLimiter },
      sessionId,
      ctx.ip,
    );
    ctx.set("Cache-Control", "no-store");
    ctx.status = 201;
    ctx.body = {
      token: minted.token,
      expiresAt: minted.expiresAt.toISOString(),
      path: VOICE_STREAM_PATH,
      protocols: [VOICE_PROTOCOL, `${TOKEN_PROTOCOL_PREFIX}${minted.token}`],
    };
  });

  const inputDoc = doc({
    summary: 'Type a transcript into the session\'s Claude pane ("send" presses Enter)',
    description:
      "Control characters are removed; nothing printable left is 400 `empty_transcript`, too long is 400 " +
      "`transcript_too_long`. Someone else's (or a closed) session is 404 and nothing is typed.",
    tag: "voice",
    body: inputBody,
    responses: {
      202: z.object({
        actionId: z.string().describe("the box agent's keys action"),
        typed: z.string().describe("the text as typed (cleaned; a trailing space in insert mode)"),
        enter: z.boolean(),
      }),
    },
    errors: [404],
  });
  router.post("/api/v1/workspaces/:id/sessions/:sessionId/input", inputDoc, async (ctx) => {
    const { text, mode } = parseInput(inputBody, ctx.request.body ?? {});
    const { session } = await ctx.state.scope.sessions.get(ctx.params.sessionId!);
    if (session.workspaceId !== ctx.params.id) throw new NotFound("session");
    const queued = await typeTranscript(ctx.state.scope, session.id, { text, mode }, ctx.ip);
    ctx.status = 202;
    ctx.body = { actionId: queued.actionId, typed: queued.typed, enter: mode === "send" };
  });
}
