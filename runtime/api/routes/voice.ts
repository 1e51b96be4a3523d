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
import { NotFound } from "../../platform/errors.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";

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

export function voiceRoutes(router: ApiRouter, deps: AppDeps): void {
  const voice = deps.voice;

  router.get("/api/v1/voice", async (ctx) => {
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

  router.post("/api/v1/voice/token", async (ctx) => {
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

  router.post("/api/v1/voice/usage", async (ctx) => {
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

  router.post("/api/v1/voice/stream-token", async (ctx) => {
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

  router.post("/api/v1/workspaces/:id/sessions/:sessionId/input", async (ctx) => {
    const { text, mode } = parseInput(inputBody, ctx.request.body ?? {});
    const { session } = await ctx.state.scope.sessions.get(ctx.params.sessionId!);
    if (session.workspaceId !== ctx.params.id) throw new NotFound("session");
    const queued = await typeTranscript(ctx.state.scope, session.id, { text, mode }, ctx.ip);
    ctx.status = 202;
    ctx.body = { actionId: queued.actionId, typed: queued.typed, enter: mode === "send" };
  });
}
