/**
 * The self-hosters' shared infrastructure (root `Pulumi.yaml`, `pulumi up`): a private network, the
 * control-plane host and its firewall, the baseline firewall every box gets by label, DNS for the API and a
 * wildcard preview domain on a separate domain, the R2 bucket that holds the workspace stacks' state (with
 * credentials scoped to it), and the tailnet policy with `tag:workspace` / `tag:control-plane`. Its outputs
 * are the control plane's Pulumi-driver settings.
 *
 * Providers come from stack config (`hcloud:token`, `cloudflare:apiToken`, `tailscale:oauthClientId`/
 * `oauthClientSecret`), as for any CLI project.
 */
import { createHash } from "node:crypto";
import * as cloudflare from "@pulumi/cloudflare";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import * as tailscale from "@pulumi/tailscale";
import { R2_PERMISSION_GROUPS, r2BucketResource, r2Endpoint } from "../stacks/workspace/component.ts";
import { boxFirewallRules, DEFAULT_PREVIEW_PORTS, type PortRange } from "../stacks/workspace/firewall.ts";
import { ROLE_LABEL, TTYD_PORT, WORKSPACE_ROLE } from "../stacks/workspace/names.ts";

export interface InfraConfig {
  location: string;
  networkZone: string;
  networkRange: string;
  subnetRange: string;
  controlPlane: { serverType: string; image: string; sshKeys: string[] };
  /** Who may SSH to the control-plane host; empty means nobody. */
  adminCidrs: string[];
  /** e.g. `api.berth.example`, in the zone `apiZoneId`. */
  apiDomain: string;
  apiZoneId: string;
  /** e.g. `preview.berthbox.dev`: `*.preview.berthbox.dev` serves previews. A different registrable domain. */
  previewDomain: string;
  previewZoneId: string;
  proxied: boolean;
  cloudflareAccountId: string;
  stateBucket: string;
  previewPorts: PortRange;
  /** Overwrite the tailnet policy file (it replaces the whole file). */
  manageTailnetAcl: boolean;
}

export function readConfig(): InfraConfig {
  const c = new pulumi.Config();
  return {
    location: c.get("location") ?? "fsn1",
    networkZone: c.get("networkZone") ?? "eu-central",
    networkRange: c.get("networkRange") ?? "10.42.0.0/16",
    subnetRange: c.get("subnetRange") ?? "10.42.0.0/24",
    controlPlane: {
      serverType: c.get("controlPlaneServerType") ?? "cx22",
      image: c.get("controlPlaneImage") ?? "ubuntu-24.04",
      sshKeys: c.getObject<string[]>("sshKeys") ?? [],
    },
    adminCidrs: c.getObject<string[]>("adminCidrs") ?? [],
    apiDomain: c.require("apiDomain"),
    apiZoneId: c.require("apiZoneId"),
    previewDomain: c.require("previewDomain"),
    previewZoneId: c.require("previewZoneId"),
    proxied: c.getBoolean("proxied") ?? false,
    cloudflareAccountId: c.require("cloudflareAccountId"),
    stateBucket: c.get("stateBucket") ?? "berth-pulumi-state",
    previewPorts: {
      from: c.getNumber("previewPortFrom") ?? DEFAULT_PREVIEW_PORTS.from,
      to: c.getNumber("previewPortTo") ?? DEFAULT_PREVIEW_PORTS.to,
    },
    manageTailnetAcl: c.getBoolean("manageTailnetAcl") ?? true,
  };
}

/** The last two labels: enough to tell `api.example.com` and `preview.example.com` share a cookie domain. */
function registrable(domain: string): string {
  return domain.toLowerCase().replace(/\.$/, "").split(".").slice(-2).join(".");
}

/** Previews run user code: no cookie of the API's domain may ever reach them. */
export function assertSeparateDomains(
  apiDomain: string,
  previewDomain: string,
  apiZoneId: string,
  previewZoneId: string,
): void {
  if (registrable(apiDomain) === registrable(previewDomain) || apiZoneId === previewZoneId) {
    throw new Error(
      `previewDomain (${previewDomain}) must be on a different registrable domain and zone than apiDomain (${apiDomain})`,
    );
  }
}

/** The tailnet policy: the control plane reaches boxes on ttyd and the preview ports; boxes reach nothing but it. */
export function tailnetPolicy(previewPorts: PortRange): string {
  const previews = `${previewPorts.from}-${previewPorts.to}`;
  return JSON.stringify(
    {
      tagOwners: {
        "tag:control-plane": ["autogroup:admin"],
        // The control plane's OAuth client (tagged tag:control-plane) mints the boxes' auth keys.
        "tag:workspace": ["autogroup:admin", "tag:control-plane"],
      },
      acls: [
        {
          action: "accept",
          src: ["tag:control-plane"],
          dst: [`tag:workspace:${TTYD_PORT}`, `tag:workspace:${previews}`],
        },
        { action: "accept", src: ["tag:workspace"], dst: ["tag:control-plane:443"] },
        { action: "accept", src: ["autogroup:admin"], dst: ["tag:control-plane:22"] },
      ],
    },
    null,
    2,
  );
}

export function infraProgram(cfg: InfraConfig) {
  assertSeparateDomains(cfg.apiDomain, cfg.previewDomain, cfg.apiZoneId, cfg.previewZoneId);
  const labels = { "managed-by": "berth-infra" };

  const network = new hcloud.Network(
    "berth",
    { ipRange: cfg.networkRange, labels, deleteProtection: true },
    { protect: true },
  );
  const subnet = new hcloud.NetworkSubnet("berth", {
    networkId: network.id.apply(Number),
    type: "cloud",
    networkZone: cfg.networkZone,
    ipRange: cfg.subnetRange,
  });

  const world = ["0.0.0.0/0", "::/0"];
  const cpFirewall = new hcloud.Firewall("control-plane", {
    labels,
    rules: [
      {
        direction: "in",
        protocol: "tcp",
        port: "443",
        sourceIps: world,
        description: "HTTPS: API, terminals, previews",
      },
      {
        direction: "in",
        protocol: "tcp",
        port: "80",
        sourceIps: world,
        description: "HTTP: ACME and redirects",
      },
      {
        direction: "in",
        protocol: "udp",
        port: "41641",
        sourceIps: world,
        description: "tailscale direct connections",
      },
      { direction: "in", protocol: "icmp", sourceIps: world, description: "ping" },
      ...(cfg.adminCidrs.length > 0
        ? [
            {
              direction: "in",
              protocol: "tcp",
              port: "22",
              sourceIps: cfg.adminCidrs,
              description: "ssh: admins",
            },
          ]
        : []),
    ],
  });
  const controlPlane = new hcloud.Server(
    "control-plane",
    {
      name: "berth-control-plane",
      serverType: cfg.controlPlane.serverType,
      image: cfg.controlPlane.image,
      location: cfg.location,
      sshKeys: cfg.controlPlane.sshKeys,
      labels: { ...labels, [ROLE_LABEL]: "control-plane" },
      firewallIds: [cpFirewall.id.apply(Number)],
      publicNets: [{ ipv4Enabled: true, ipv6Enabled: true }],
      networks: [{ networkId: network.id.apply(Number) }],
      deleteProtection: true,
      rebuildProtection: true,
    },
    { dependsOn: [subnet], protect: true, ignoreChanges: ["image", "sshKeys", "userData"] },
  );

  // Where the control plane's connections to boxes come from: its public addresses.
  const controlPlaneCidrs = pulumi
    .all([controlPlane.ipv4Address, controlPlane.ipv6Address])
    .apply(([v4, v6]) => [`${v4}/32`, ...(v6 ? [`${v6}/128`] : [])]);
  const boxFirewall = new hcloud.Firewall("boxes", {
    name: "berth-boxes",
    labels,
    rules: controlPlaneCidrs.apply((cidrs) =>
      boxFirewallRules({ controlPlaneCidrs: cidrs, previewPorts: cfg.previewPorts }),
    ),
    // Every box carries this label, so it is behind this firewall from its first boot.
    applyTos: [{ labelSelector: `${ROLE_LABEL}=${WORKSPACE_ROLE}` }],
  });

  const dns = (name: string, zoneId: string, host: string) => {
    const common = { zoneId, name: host, ttl: 1, proxied: cfg.proxied };
    new cloudflare.DnsRecord(`${name}-a`, { ...common, type: "A", content: controlPlane.ipv4Address });
    new cloudflare.DnsRecord(`${name}-aaaa`, { ...common, type: "AAAA", content: controlPlane.ipv6Address });
  };
  dns("api", cfg.apiZoneId, cfg.apiDomain);
  dns("previews", cfg.previewZoneId, `*.${cfg.previewDomain}`);

  // Workspace stack state: a protected bucket and a token that reaches that bucket only.
  const acct = cfg.cloudflareAccountId;
  const stateBucket = new cloudflare.R2Bucket(
    "state",
    { accountId: acct, name: cfg.stateBucket },
    { protect: true },
  );
  const permissionGroups = R2_PERMISSION_GROUPS.map((name) =>
    cloudflare
      .getAccountApiTokenPermissionGroupsListOutput({ accountId: acct, name: encodeURIComponent(name) })
      .apply((l) => {
        const match = l.results.find((r) => r.name === name) ?? l.results[0];
        if (!match) throw new Error(`Cloudflare permission group "${name}" not found`);
        return { id: match.id };
      }),
  );
  const stateToken = new cloudflare.AccountToken(
    "state",
    {
      accountId: acct,
      name: "berth-pulumi-state",
      policies: [
        {
          effect: "allow",
          permissionGroups,
          resources: stateBucket.name.apply((b) => JSON.stringify({ [r2BucketResource(acct, b)]: "*" })),
        },
      ],
    },
    { additionalSecretOutputs: ["value"] },
  );

  let acl: tailscale.Acl | undefined;
  if (cfg.manageTailnetAcl) {
    acl = new tailscale.Acl("tailnet", {
      acl: tailnetPolicy(cfg.previewPorts),
      overwriteExistingContent: true,
    });
  }

  return {
    controlPlaneIpv4: controlPlane.ipv4Address,
    controlPlaneIpv6: controlPlane.ipv6Address,
    controlPlaneCidrs,
    networkId: network.id,
    boxFirewallId: boxFirewall.id,
    apiUrl: pulumi.interpolate`https://${cfg.apiDomain}`,
    previewDomain: cfg.previewDomain,
    stateBackendUrl: stateBucket.name.apply((b) => `s3://${b}?endpoint=${r2Endpoint(acct)}&region=auto`),
    stateAccessKeyId: pulumi.secret(stateToken.id),
    stateSecretAccessKey: pulumi.secret(
      stateToken.value.apply((v) => createHash("sha256").update(v).digest("hex")),
    ),
    tailnetAclManaged: acl !== undefined,
  };
}
