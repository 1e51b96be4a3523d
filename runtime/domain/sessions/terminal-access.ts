/**
 * The ticket to a session's terminal: a short-lived, single-use token the client presents when it opens
 * the terminal socket (runtime/gateway/terminal/). Minting one is `session.open` in the audit log.
 */
import { Conflict, NotFound } from "../../platform/errors.ts";
import type { AuthorizedStore } from "../../store/store.ts";
import type { TerminalTokenStore } from "../../store/terminal-tokens.ts";

export interface MintedTerminalToken {
  token: string;
  jti: string;
  expiresAt: Date;
}

/** Signs tokens and records them in the ledger it is given (runtime/gateway/terminal/tokens.ts). */
export interface TerminalTokenMinter {
  mint(
    ledger: Pick<TerminalTokenStore, "record">,
    subject: { userId: string; workspaceId: string; sessionId: string; readOnly?: boolean },
  ): Promise<MintedTerminalToken>;
}

/**
 * A token for the scope's user on an open session they may open. Refused with 409 `workspace_not_ready`
 * while the box is asleep (a token could not open anything yet); `limit` is the per-user mint rate.
 */
export async function issueTerminalToken(
  scope: AuthorizedStore,
  deps: { tokens: TerminalTokenMinter; limit: (userId: string) => Promise<void> },
  sessionId: string,
  options: { readOnly: boolean; ip: string },
): Promise<MintedTerminalToken> {
  // Terminals are for people: a token names the user it was minted for.
  if (scope.actor.kind !== "user") throw new NotFound("session");
  const { userId } = scope.actor;
  const { session, workspace } = await scope.sessions.get(sessionId);
  await deps.limit(userId);
  const box = await scope.workspaces.terminalEndpoint(workspace.id);
  if (!box.ok) {
    throw new Conflict("workspace_not_ready", `the workspace is ${box.state}; wake it first`, {
      state: box.state,
    });
  }
  return scope.transaction(async (tx) => {
    const minted = await deps.tokens.mint(tx.terminalTokens, {
      userId,
      workspaceId: workspace.id,
      sessionId: session.id,
      readOnly: options.readOnly,
    });
    await tx.audit({
      action: "session.open",
      targetType: "session",
      targetId: session.id,
      ip: options.ip,
      details: {
        workspaceId: workspace.id,
        name: session.name,
        tokenId: minted.jti,
        readOnly: options.readOnly,
      },
    });
    return minted;
  });
}
