/**
 * Which addresses the control plane may dial as a box. `public_ip` comes from the stack outputs, but
 * `tailnet_ip` is whatever the box's agent reports on its heartbeats, and the box belongs to its user: a
 * user with root on their box can send heartbeats of their own. Without this check a box could point the
 * preview proxy at the control plane's loopback, its private network or the cloud metadata service and read
 * the answers back through a preview. So: literal IPs only (never a name to resolve), the tailnet path only
 * inside Tailscale's ranges, and never loopback, link-local, unspecified or multicast except loopback in
 * local mode, where every box is on this machine.
 */
import { BlockList, isIP } from "node:net";
import { TAILNET_CIDR } from "../../stacks/workspace/names.ts";

// Lives here, not in path-resolver.ts (which re-exports it), so the two modules do not import each other.
export type UpstreamPath = "public" | "tailnet";

export type AddressPolicy = (path: UpstreamPath, ip: string) => boolean;

function subnets(list: Array<[string, number, "ipv4" | "ipv6"]>): BlockList {
  const block = new BlockList();
  for (const [net, prefix, family] of list) block.addSubnet(net, prefix, family);
  return block;
}

const [tailnetNet, tailnetPrefix] = TAILNET_CIDR.split("/");
/** Tailscale hands out 100.64.0.0/10 and fd7a:115c:a1e0::/48. */
const TAILNET = subnets([
  [tailnetNet as string, Number(tailnetPrefix), "ipv4"],
  ["fd7a:115c:a1e0::", 48, "ipv6"],
]);
const LOOPBACK = subnets([
  ["127.0.0.0", 8, "ipv4"],
  ["::1", 128, "ipv6"],
]);
const NEVER = subnets([
  ["0.0.0.0", 8, "ipv4"],
  ["169.254.0.0", 16, "ipv4"],
  ["224.0.0.0", 4, "ipv4"],
  ["255.255.255.255", 32, "ipv4"],
  ["::", 128, "ipv6"],
  ["fe80::", 10, "ipv6"],
  ["ff00::", 8, "ipv6"],
]);

export function addressPolicy(options: { allowLoopback: boolean }): AddressPolicy {
  return (path, ip) => {
    const version = isIP(ip);
    if (version === 0) return false;
    const family = version === 4 ? "ipv4" : "ipv6";
    if (NEVER.check(ip, family)) return false;
    if (LOOPBACK.check(ip, family)) return options.allowLoopback;
    return path === "public" || TAILNET.check(ip, family);
  };
}
