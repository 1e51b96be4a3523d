/**
 * Where a preview's traffic may go: only its own workspace's box, only on an allowed port. Everything the
 * proxy connects to is decided here, from Postgres rows, never from the request.
 */
import { DEFAULT_PREVIEW_PORTS } from "../../../stacks/workspace/firewall.ts";

/** Ports a preview may use: the range the box firewall admits; the box's own services are excluded below. */
export const PREVIEW_PORT_MIN = DEFAULT_PREVIEW_PORTS.from;
export const PREVIEW_PORT_MAX = DEFAULT_PREVIEW_PORTS.to;

/** The box's own endpoints (box/boot-config.ts): the terminal (ttyd) and the agent's loopback API. */
export const BOX_SERVICE_PORTS: ReadonlySet<number> = new Set([7681, 7690]);

export interface InstanceAddress {
  /** The instance id: the upstream resolver remembers per instance which path (public, tailnet) works. */
  id: string;
  publicIp: string | null;
  tailnetIp: string | null;
  /** The instance's terminal port (dynamic in local mode). */
  terminalPort: number | null;
}

/** Ports the proxy must never reach on a given box, besides the range check. */
export interface ReservedPorts {
  /** When the box address is loopback (local mode), the control plane's own port and Postgres's. */
  controlPlaneLocal: ReadonlySet<number>;
}

/** Addresses that reach this machine: loopback, and the unspecified ones, which Linux dials as loopback. */
export function isLoopback(host: string): boolean {
  return ["::1", "::", "0.0.0.0"].includes(host) || host.startsWith("127.") || host.startsWith("::ffff:127.");
}

/** Whether `port` may be declared at all (without knowing the box). */
export function isDeclarablePort(port: number): boolean {
  return (
    Number.isInteger(port) &&
    port >= PREVIEW_PORT_MIN &&
    port <= PREVIEW_PORT_MAX &&
    !BOX_SERVICE_PORTS.has(port)
  );
}

/**
 * Whether the proxy may dial `host:port` for this instance. A detected preview can name any port the agent
 * saw, so the check runs on every request, not only when a preview is declared.
 */
export function isAllowedUpstream(
  host: string,
  port: number,
  instance: InstanceAddress,
  reserved: ReservedPorts,
): boolean {
  if (!isDeclarablePort(port)) return false;
  if (instance.terminalPort === port) return false;
  if (isLoopback(host) && reserved.controlPlaneLocal.has(port)) return false;
  return true;
}
