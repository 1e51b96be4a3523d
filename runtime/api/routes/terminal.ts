/**
 * `POST /api/v1/sessions/:id/terminal-token` → `{ token, expiresAt, protocols }`: the short-lived,
 * single-use ticket a client presents when it opens `GET /api/v1/sessions/:id/terminal` as a WebSocket
 * (runtime/gateway/terminal/). The client offers `protocols` as the WebSocket's subprotocol list, so the
 * token rides in `Sec-WebSocket-Protocol` and never in a URL.
 *
 * Body (optional): `{"readOnly": true}` mints a viewer's token, whose keystrokes the relay drops.
 * 404 for a session that is closed, missing or someone else's; 409 `workspace_not_ready` when the box is
 * asleep (a token could not open anything yet; wake it first); 429 past the per-user mint rate.
 */
import { z } from "zod";
import { issueTerminalToken } from "../../domain/sessions/terminal-access.ts";
import { TerminalClose } from "../../gateway/terminal/close-codes.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";
import { doc } from "../openapi/doc.ts";
import type { WebSocketDoc } from "../openapi/document.ts";

/** `readOnly`: a viewer's token; the relay drops its keystrokes (INPUT), the screen still follows. */
const mintBody = z.object({ readOnly: z.boolean().optional() }).strict();

const TerminalToken = z.object({
  token: z.string(),
  expiresAt: z.iso.datetime(),
  protocols: z.array(z.string()).describe("offer exactly these as the WebSocket's subprotocols"),
});

/** The relay (runtime/gateway/terminal/gateway.ts) as the document describes it; Koa never sees upgrades. */
export const terminalSocketDoc: WebSocketDoc = {
  path: "/api/v1/sessions/:id/terminal",
  summary: "A session's terminal",
  description:
    "ttyd's protocol through the relay. Mint a token (POST …/terminal-token) and offer its `protocols` " +
    "(`tty`, `berth.token.<token>`, optionally `berth.reconnect.<attempt>`); the Origin must be this control " +
    "plane's. Send the JSON `{columns, rows}` first, then binary frames: '0'+bytes input, '1'+JSON resize. " +
    "The server sends '0'+bytes output, '1'+title. A refusal after the handshake closes with a code below.",
  subprotocols: ["tty", "berth.token.<token>", "berth.reconnect.<n>"],
  closeCodes: {
    [TerminalClose.ENDED]: "the tmux client exited (detached or the session was killed)",
    [TerminalClose.GOING_AWAY]: "this control plane is restarting: reconnect",
    [TerminalClose.TERMINAL_ERROR]: "the box failed in a way the client cannot fix",
    [TerminalClose.BAD_REQUEST]: "the first message was not the JSON init",
    [TerminalClose.UNAUTHORIZED]: "token missing, expired, used or for another session: mint a new one",
    [TerminalClose.SESSION_GONE]: "the session is closed or not yours",
    [TerminalClose.IDLE_TIMEOUT]: "idle for too long",
    [TerminalClose.TOO_MANY_SOCKETS]: "too many terminals open on this session",
    [TerminalClose.RATE_LIMITED]: "too many sockets opened recently",
    [TerminalClose.BOX_UNREACHABLE]: "the box could not be reached: retry",
    [TerminalClose.BOX_ASLEEP]: "the workspace is not ready: wake it or wait",
  },
};

export function terminalRoutes(router: ApiRouter, deps: AppDeps): void {
  const gateway = deps.terminal;

  const mintDoc = doc({
    summary: "Mint a one-use token for the session's terminal WebSocket",
    body: mintBody,
    responses: { 201: TerminalToken },
    errors: [404, 409],
  });
  router.post("/api/v1/sessions/:id/terminal-token", mintDoc, async (ctx) => {
    const { readOnly } = parseInput(mintBody, ctx.request.body ?? {});
    const minted = await issueTerminalToken(
      ctx.state.scope,
      { tokens: gateway.tokens, limit: gateway.mintLimiter },
      ctx.params.id!,
      { readOnly: readOnly === true, ip: ctx.ip },
    );
    ctx.set("Cache-Control", "no-store");
    ctx.status = 201;
    ctx.body = {
      token: minted.token,
      expiresAt: minted.expiresAt.toISOString(),
      protocols: ["tty", `berth.token.${minted.token}`],
    };
  });
}
