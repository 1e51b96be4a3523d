/**
 * Voice input's business rules: who may have a Deepgram token (voice configured, under the per-user mint
 * rate and the daily quota), and how a transcript reaches a session (cleaned, capped, queued as the box
 * agent's keys action for the Claude pane, audited without its text).
 */
import { Conflict, Invalid, NotFound } from "../../platform/errors.ts";
import type { AuthorizedStore } from "../../store/store.ts";
import type { QueuedKeys } from "../../store/voice.ts";
import type { MintedTerminalToken, TerminalTokenMinter } from "../sessions/terminal-access.ts";
import { type DeepgramClient, LINEAR16_PARAMS, LISTEN_PARAMS } from "./deepgram.ts";
import { cleanTranscript, MAX_TRANSCRIPT_CHARS } from "./transcript.ts";

/** "insert" types the text and leaves it for the user to edit; "send" presses Enter after it. */
export type InputMode = "insert" | "send";

export const VOICE_DISABLED_HINT =
  "voice input is off on this server: set DEEPGRAM_API_KEY (a Deepgram key with Member role) and restart";

export interface VoiceSettings {
  /** null: no DEEPGRAM_API_KEY, voice is off. */
  deepgram: DeepgramClient | null;
  dailySeconds: number;
}

/** Checks and spends the usage tickets that come with direct tokens (gateway/terminal/tokens.ts format). */
export interface UsageTicketChecker {
  verify(token: string): Promise<
    | {
        ok: true;
        claims: { jti: string; userId: string; workspaceId: string; sessionId: string; expiresAt: Date };
      }
    | { ok: false; refusal: string }
  >;
  consume(claims: {
    jti: string;
    userId: string;
    workspaceId: string;
    sessionId: string;
    expiresAt: Date;
  }): Promise<boolean>;
}

export interface DirectVoiceToken {
  token: string;
  expiresAt: Date;
  /** The live endpoint with every parameter, for raw 16 kHz linear16; `params` lists them. */
  listenUrl: string;
  params: Record<string, string>;
  /** Offer these as the WebSocket's subprotocols (browsers cannot set Authorization). */
  protocols: [string, string];
  /** With a session: the single-use ticket the client reports its stream's seconds with. */
  usageTicket?: string;
}

function startOfUtcDay(now = new Date()): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
}

/** NotFound for non-users, Conflict when voice is off or the user's daily seconds are spent. */
export async function requireVoice(scope: AuthorizedStore, settings: VoiceSettings): Promise<DeepgramClient> {
  if (scope.actor.kind !== "user") throw new NotFound("voice");
  if (!settings.deepgram) throw new Conflict("voice_disabled", VOICE_DISABLED_HINT);
  const used = await scope.voice.secondsSince(startOfUtcDay());
  if (used >= settings.dailySeconds) {
    throw new Conflict(
      "voice_quota_exhausted",
      `today's ${settings.dailySeconds} voice seconds are used up`,
      {
        usedSeconds: used,
        dailySeconds: settings.dailySeconds,
      },
    );
  }
  return settings.deepgram;
}

/** A short-lived Deepgram token for the user's browser to stream to Deepgram directly; audited. */
export async function issueVoiceToken(
  scope: AuthorizedStore,
  deps: { settings: VoiceSettings; limit: (userId: string) => Promise<void>; tickets: TerminalTokenMinter },
  ip: string,
  sessionId?: string,
): Promise<DirectVoiceToken> {
  if (scope.actor.kind !== "user") throw new NotFound("voice");
  const { userId } = scope.actor;
  // Someone else's session is NotFound before anything is minted.
  const target = sessionId ? await scope.sessions.get(sessionId) : null;
  if (!deps.settings.deepgram) throw new Conflict("voice_disabled", VOICE_DISABLED_HINT);
  await deps.limit(userId);
  const deepgram = await requireVoice(scope, deps.settings);
  const grant = await deepgram.grant();
  const expiresAt = new Date(Date.now() + grant.expiresInSeconds * 1000);
  const ticket = await scope.transaction(async (tx) => {
    const minted = target
      ? await deps.tickets.mint(tx.terminalTokens, {
          userId,
          workspaceId: target.workspace.id,
          sessionId: target.session.id,
        })
      : null;
    await tx.audit({
      action: "voice.token",
      targetType: target ? "session" : "user",
      targetId: target ? target.session.id : userId,
      ip,
      details: { expiresAt: expiresAt.toISOString(), ...(minted ? { ticketId: minted.jti } : {}) },
    });
    return minted;
  });
  return {
    ...(ticket ? { usageTicket: ticket.token } : {}),
    token: grant.accessToken,
    expiresAt,
    listenUrl: deepgram.listenUrl(),
    params: { ...LISTEN_PARAMS, ...LINEAR16_PARAMS },
    protocols: ["bearer", grant.accessToken],
  };
}

/**
 * Types a transcript into the Claude pane of the user's session: control characters removed, at most
 * MAX_TRANSCRIPT_CHARS, Enter only for "send". In "insert" mode a space follows, so the next utterance
 * does not run into this one. Someone else's (or a closed) session is NotFound and nothing is queued.
 */
export async function typeTranscript(
  scope: AuthorizedStore,
  sessionId: string,
  input: { text: string; mode: InputMode },
  ip: string,
  via: "api" | "stream" = "api",
): Promise<QueuedKeys & { typed: string }> {
  const text = cleanTranscript(input.text);
  if (text.length === 0) {
    throw new Invalid("empty_transcript", "body.text: nothing printable to type", { field: "text" });
  }
  if (text.length > MAX_TRANSCRIPT_CHARS) {
    throw new Invalid("transcript_too_long", `body.text: at most ${MAX_TRANSCRIPT_CHARS} characters`, {
      field: "text",
    });
  }
  const typed = input.mode === "insert" ? `${text} ` : text;
  return scope.transaction(async (tx) => {
    const queued = await tx.voice.queueKeys(sessionId, { keys: typed, enter: input.mode === "send" });
    await tx.audit({
      action: "voice.input",
      targetType: "session",
      targetId: sessionId,
      ip,
      details: { workspaceId: queued.workspaceId, mode: input.mode, chars: text.length, via },
    });
    return { ...queued, typed };
  });
}

/**
 * The ticket to `/api/v1/voice/stream` (runtime/gateway/voice): single-use and short-lived like a terminal
 * token, bound to the user and the session the transcripts go to. Minting one is audited.
 */
export async function issueStreamToken(
  scope: AuthorizedStore,
  deps: { settings: VoiceSettings; tokens: TerminalTokenMinter; limit: (userId: string) => Promise<void> },
  sessionId: string,
  ip: string,
): Promise<MintedTerminalToken> {
  if (scope.actor.kind !== "user") throw new NotFound("session");
  const { userId } = scope.actor;
  const { session, workspace } = await scope.sessions.get(sessionId);
  if (!deps.settings.deepgram) throw new Conflict("voice_disabled", VOICE_DISABLED_HINT);
  await deps.limit(userId);
  await requireVoice(scope, deps.settings);
  return scope.transaction(async (tx) => {
    const minted = await deps.tokens.mint(tx.terminalTokens, {
      userId,
      workspaceId: workspace.id,
      sessionId: session.id,
    });
    await tx.audit({
      action: "voice.stream_token",
      targetType: "session",
      targetId: session.id,
      ip,
      details: { workspaceId: workspace.id, tokenId: minted.jti },
    });
    return minted;
  });
}

/** Seconds left of the user's daily voice quota. */
export async function remainingVoiceSeconds(
  scope: AuthorizedStore,
  settings: VoiceSettings,
): Promise<number> {
  return Math.max(0, settings.dailySeconds - (await scope.voice.secondsSince(startOfUtcDay())));
}

/**
 * The direct path's usage: the client reports its stream's seconds with the ticket that came with its
 * token. The ticket is spent once, and the seconds are bounded by the time since it was minted and by the
 * stream limit, so a client can under-report but not bill someone else or inflate beyond the wall clock.
 */
export async function recordDirectUsage(
  scope: AuthorizedStore,
  deps: { tickets: UsageTicketChecker; ticketTtlSeconds: number; maxStreamSeconds: number },
  report: { ticket: string; seconds: number },
): Promise<number> {
  if (scope.actor.kind !== "user") throw new NotFound("voice");
  const invalid = (why: string) =>
    new Invalid("usage_ticket_invalid", `body.ticket: ${why}`, { field: "ticket" });
  const checked = await deps.tickets.verify(report.ticket);
  if (!checked.ok) throw invalid(checked.refusal);
  const { claims } = checked;
  if (claims.userId !== scope.actor.userId) throw invalid("invalid");
  if (!(await deps.tickets.consume(claims))) throw invalid("used");
  const mintedAt = claims.expiresAt.getTime() - deps.ticketTtlSeconds * 1000;
  const elapsed = Math.ceil((Date.now() - mintedAt) / 1000);
  const seconds = Math.max(0, Math.min(report.seconds, elapsed, deps.maxStreamSeconds));
  await scope.voice.recordUsage({ workspaceId: claims.workspaceId, seconds, startedAt: new Date(mintedAt) });
  return seconds;
}
