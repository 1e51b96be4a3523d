/**
 * The box firewall's rules, shared by the per-workspace firewall and the self-hosters' baseline firewall in
 * `infra/`. ttyd and the preview ports are reachable only from the control plane's addresses and the tailnet.
 */
import type * as hcloud from "@pulumi/hcloud";
import { TAILNET_CIDR, TTYD_PORT, WORLD_CIDRS } from "./names.ts";

export interface PortRange {
  from: number;
  to: number;
}

/**
 * Ports a dev server may listen on and the control plane may proxy to: every unprivileged port (dev servers
 * pick 1313, 4200, 5173, 8000, 24678…). Only the control plane and the tailnet are admitted to them, and the
 * preview proxy (runtime/gateway/preview/port-policy.ts) uses this same range.
 */
export const DEFAULT_PREVIEW_PORTS: PortRange = { from: 1024, to: 65535 };
/** Tailscale's WireGuard port: open so peers can connect directly instead of through a DERP relay. */
export const TAILSCALE_UDP_PORT = 41641;

export interface BoxFirewallOptions {
  /** Addresses the control plane connects from (its public IPv4/IPv6 as /32 and /128). Never the world. */
  controlPlaneCidrs: string[];
  previewPorts?: PortRange;
  /** SSH sources; empty or absent means no SSH at all. */
  sshSourceCidrs?: string[];
}

export function isWorldCidr(cidr: string): boolean {
  return (WORLD_CIDRS as readonly string[]).includes(cidr.trim());
}

function assertRange({ from, to }: PortRange): void {
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 1 || to > 65535 || from > to) {
    throw new Error(`invalid preview port range ${from}-${to}`);
  }
}

export function boxFirewallRules(opts: BoxFirewallOptions): hcloud.types.input.FirewallRule[] {
  if (opts.controlPlaneCidrs.length === 0) throw new Error("controlPlaneCidrs must not be empty");
  const open = opts.controlPlaneCidrs.filter(isWorldCidr);
  if (open.length > 0) {
    throw new Error(`controlPlaneCidrs must name the control plane, not the world (${open.join(", ")})`);
  }
  const previews = opts.previewPorts ?? DEFAULT_PREVIEW_PORTS;
  assertRange(previews);
  const trusted = [...opts.controlPlaneCidrs, TAILNET_CIDR];
  const world = [...WORLD_CIDRS];
  const rules: hcloud.types.input.FirewallRule[] = [
    {
      direction: "in",
      protocol: "tcp",
      port: String(TTYD_PORT),
      sourceIps: trusted,
      description: "ttyd: control plane and tailnet only",
    },
    {
      direction: "in",
      protocol: "tcp",
      port: previews.from === previews.to ? String(previews.from) : `${previews.from}-${previews.to}`,
      sourceIps: trusted,
      description: "previews: control plane and tailnet only",
    },
    {
      direction: "in",
      protocol: "udp",
      port: String(TAILSCALE_UDP_PORT),
      sourceIps: world,
      description: "tailscale direct connections",
    },
    { direction: "in", protocol: "icmp", sourceIps: world, description: "ping" },
  ];
  const ssh = opts.sshSourceCidrs ?? [];
  if (ssh.length > 0) {
    rules.push({
      direction: "in",
      protocol: "tcp",
      port: "22",
      sourceIps: ssh,
      description: "ssh (configured)",
    });
  }
  return rules;
}

/** Whether a Hetzner rule's `port` (`"80"`, `"80-85"`, `"any"` or absent) admits any port of `range`. */
export function ruleOverlaps(rulePort: string | undefined, range: PortRange): boolean {
  if (rulePort === undefined || rulePort === "" || rulePort === "any") return true;
  const [first, last] = rulePort.split("-");
  const from = Number(first);
  const to = last === undefined ? from : Number(last);
  return from <= range.to && to >= range.from;
}
