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
import { resolveBoxTerminalAddress } from "../../gateway/terminal/box-endpoint.ts";
import { writeAudit } from "../../store/audit-log.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { HttpError, parseInput } from "../errors.ts";

/** `readOnly`: a viewer's token; the relay drops its keystrokes (INPUT), the screen still follows. */
const mintBody = z.object({ readOnly: z.boolean().optional() }).strict();

export function terminalRoutes(router: ApiRouter, deps: AppDeps): void {
  const { db } = deps.database;
  const gateway = deps.terminal;

  router.post("/api/v1/sessions/:id/terminal-token", async (ctx) => {
    const { session, workspace } = await ctx.state.scope.session(ctx.params.id!);
    const { readOnly } = parseInput(mintBody, ctx.request.body ?? {});
    await gateway.mintLimiter(ctx.state.actor.userId);
    const box = await resolveBoxTerminalAddress(db, workspace.id);
    if (!box.ok) {
      throw new HttpError(409, "workspace_not_ready", `the workspace is ${box.state}; wake it first`, {
        extra: { state: box.state },
      });
    }
    const minted = await db.transaction(async (tx) => {
      const minted = await gateway.tokens.mint(tx, {
        userId: ctx.state.actor.userId,
        workspaceId: workspace.id,
        sessionId: session.id,
        readOnly: readOnly === true,
      });
      await writeAudit(tx, {
        actor: { kind: "user", userId: ctx.state.actor.userId },
        action: "session.open",
        targetType: "session",
        targetId: session.id,
        ip: ctx.ip,
        details: {
          workspaceId: workspace.id,
          name: session.name,
          tokenId: minted.jti,
          readOnly: readOnly === true,
        },
      });
      return minted;
    });
    ctx.set("Cache-Control", "no-store");
    ctx.status = 201;
    ctx.body = {
      token: minted.token,
      expiresAt: minted.expiresAt.toISOString(),
      protocols: ["tty", `berth.token.${minted.token}`],
    };
  });
}
