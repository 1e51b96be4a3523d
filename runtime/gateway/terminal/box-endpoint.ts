/**
 * Where the relay finds a workspace's terminal endpoint: the open instance's addresses and terminal port.
 * Which address is dialled (BERTH_BOX_PATHS: public first by default) is the shared upstream resolver's choice
 * (runtime/boxnet/path-resolver.ts); nothing else in the relay reads instance addresses.
 */
import { sql } from "drizzle-orm";
import { SESSION_NAME_RE } from "../../../box/protocol.ts";
import { WS_PATH } from "../../../box/terminal/protocol.ts";
import type { Db } from "../../store/client.ts";

export interface BoxTerminalAddress {
  /** The open instance: what the shared resolver (runtime/boxnet/path-resolver.ts) keys its path memory on. */
  instanceId: string;
  /** Only the Host header of the upstream request: the resolver dials the socket. */
  host: string;
  publicIp: string | null;
  tailnetIp: string | null;
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
    tailnet_ip: string | null;
    terminal_port: number | null;
  }>(
    sql`SELECT w.state, i.id AS instance_id, i.public_ip, i.tailnet_ip, i.terminal_port
          FROM workspaces w
          LEFT JOIN workspace_instances i ON i.workspace_id = w.id AND i.stopped_at IS NULL
         WHERE w.id = ${workspaceId}`,
  );
  const row = rows[0];
  if (!row) return { ok: false, state: "destroyed" };
  // `unhealthy` boxes are tried too: probes may have failed on a path that works again, and if not the
  // client hears "box unreachable" rather than "asleep".
  const host = row.public_ip ?? row.tailnet_ip;
  if (!["ready", "unhealthy"].includes(row.state) || !row.instance_id || !host || !row.terminal_port)
    return { ok: false, state: row.state };
  return {
    ok: true,
    address: {
      instanceId: row.instance_id,
      host,
      publicIp: row.public_ip,
      tailnetIp: row.tailnet_ip,
      port: row.terminal_port,
    },
  };
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
