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
import type { ApiRouter, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";

/** `readOnly`: a viewer's token; the relay drops its keystrokes (INPUT), the screen still follows. */
const mintBody = z.object({ readOnly: z.boolean().optional() }).strict();

export function terminalRoutes(router: ApiRouter, deps: AppDeps): void {
  const gateway = deps.terminal;

  router.post("/api/v1/sessions/:id/terminal-token", async (ctx) => {
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
