/**
 * Sessions are rows; the box agent makes the tmux sessions match them on its next heartbeat, which is how
 * they come back after a wake. Creating and closing one is audited with the change.
 */
import { randomBytes } from "node:crypto";
import { Conflict, NotFound } from "../../platform/errors.ts";
import { SESSION_STATE_CHANNEL } from "../../store/channels.ts";
import type { PgListener } from "../../store/listener.ts";
import type { SessionRow } from "../../store/rows.ts";
import type { AuthorizedStore } from "../../store/store.ts";

export const MAX_SESSIONS_PER_WORKSPACE = 16;

/**
 * Opens a session named `name` (already checked against ^[a-z0-9-]{1,32}$: it reaches tmux), or a
 * generated name. At most MAX_SESSIONS_PER_WORKSPACE are open, and names are unique among open ones.
 */
export async function createSession(
  scope: AuthorizedStore,
  workspaceId: string,
  name: string | undefined,
  ip: string,
  /** A guided session: Claude Code starts in `project` (under user/projects) with `task` as its prompt. */
  guided?: { project: string | null; task: string },
): Promise<SessionRow> {
  return scope.transaction(async (tx) => {
    const open = await tx.sessions.lockOpen(workspaceId);
    if (open.length >= MAX_SESSIONS_PER_WORKSPACE) {
      throw new Conflict("session_limit", `a workspace holds at most ${MAX_SESSIONS_PER_WORKSPACE} sessions`);
    }
    const wanted = name ?? `s-${randomBytes(3).toString("hex")}`;
    if (open.some((s) => s.name === wanted)) {
      throw new Conflict("session_exists", `a session named ${wanted} is already open`);
    }
    const session = await tx.sessions.insert(workspaceId, wanted, guided);
    await tx.audit({
      action: "session.create",
      targetType: "session",
      targetId: session.id,
      ip,
      details: { workspaceId: session.workspaceId, name: wanted, mode: session.mode },
    });
    return session;
  });
}

/** Closes an open session of the workspace; a session of another workspace is not found. */
export async function closeSession(
  scope: AuthorizedStore,
  workspaceId: string,
  sessionId: string,
  ip: string,
): Promise<void> {
  const workspace = await scope.workspaces.get(workspaceId);
  const { session } = await scope.sessions.get(sessionId);
  if (session.workspaceId !== workspace.id) throw new NotFound("session");
  await scope.transaction(async (tx) => {
    await tx.sessions.close(session.id);
    await tx.audit({ action: "session.close", targetType: "session", targetId: session.id, ip });
  });
}

/**
 * Calls `onChange` with each of the scope user's sessions whose Claude state changes (NOTIFY, then a read
 * through the scope, so only the user's own sessions ever arrive). Returns the unsubscribe function.
 */
export async function followSessionStates(
  scope: AuthorizedStore,
  listener: PgListener,
  onChange: (session: SessionRow) => void,
): Promise<() => void> {
  const userId = scope.actor.kind === "user" ? scope.actor.userId : null;
  return listener.subscribe(SESSION_STATE_CHANNEL, async (payload) => {
    const [owner, id] = payload.split(":");
    if (owner !== userId || !id) return;
    const found = await scope.sessions.get(id).catch(() => null);
    if (found) onChange(found.session);
  });
}
