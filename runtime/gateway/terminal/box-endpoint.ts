/**
 * The upstream URL of a workspace's terminal endpoint. Where the endpoint is (the open instance's addresses
 * and terminal port) comes from the authorization layer (store/workspaces.ts `terminalEndpoint`); which
 * address is dialled (BERTH_BOX_PATHS: public first by default) is the shared upstream resolver's choice
 * (runtime/boxnet/path-resolver.ts).
 */
import { SESSION_NAME_RE } from "../../../box/protocol.ts";
import { WS_PATH } from "../../../box/terminal/protocol.ts";
import type { BoxTerminalAddress } from "../../store/workspaces.ts";

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
