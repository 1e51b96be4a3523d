/**
 * Where the relay finds a workspace's terminal endpoint. For now the open instance's `public_ip` and
 * `terminal_port`; issue 9 decides between the public address and the tailnet and will replace this one
 * function with the shared resolver. Nothing else in the relay reads instance addresses.
 */
import { sql } from "drizzle-orm";
import { SESSION_NAME_RE } from "../../../box/protocol.ts";
import { WS_PATH } from "../../../box/terminal/protocol.ts";
import type { Db } from "../../db/client.ts";

export interface BoxTerminalAddress {
  /** The open instance: what the shared resolver (runtime/gateway/upstream.ts) keys its path memory on. */
  instanceId: string;
  host: string;
  port: number;
}

export type BoxTerminalLookup =
  | { ok: true; address: BoxTerminalAddress }
  /** The workspace is not ready, or has no open instance with a terminal address: the box is asleep. */
  | { ok: false; state: string };

/** The box's terminal endpoint, if the workspace is ready and its open instance has an address. */
export async function resolveBoxTerminalAddress(db: Db, workspaceId: string): Promise<BoxTerminalLookup> {
  const { rows } = await db.execute<{
    state: string;
    instance_id: string | null;
    public_ip: string | null;
    terminal_port: number | null;
  }>(
    sql`SELECT w.state, i.id AS instance_id, i.public_ip, i.terminal_port
          FROM workspaces w
          LEFT JOIN workspace_instances i ON i.workspace_id = w.id AND i.stopped_at IS NULL
         WHERE w.id = ${workspaceId}`,
  );
  const row = rows[0];
  if (!row) return { ok: false, state: "destroyed" };
  if (row.state !== "ready" || !row.instance_id || !row.public_ip || !row.terminal_port)
    return { ok: false, state: row.state };
  return { ok: true, address: { instanceId: row.instance_id, host: row.public_ip, port: row.terminal_port } };
}

/**
 * The upstream URL, built here and only here: the validated session name is the one `arg`, and nothing
 * the client sent (its query string above all) is part of it. ttyd passes `?arg=` to tmux unchecked and
 * tmux runs `#(...)` in session names, so the name is checked again even though it came from our database.
 */
export function boxTerminalUrl(address: BoxTerminalAddress, sessionName: string): string {
  if (!SESSION_NAME_RE.test(sessionName))
    throw new Error("refusing to build a terminal URL for an invalid session name");
  if (!Number.isInteger(address.port) || address.port < 1 || address.port > 65535)
    throw new Error("invalid terminal port");
  const host = address.host.includes(":") ? `[${address.host}]` : address.host;
  return `ws://${host}:${address.port}${WS_PATH}?arg=${sessionName}`;
}
