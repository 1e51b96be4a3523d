/**
 * One workspace as a Pulumi component: a protected volume and R2 bucket that live as long as the workspace,
 * and a server, volume attachment and single-use tailnet key that exist only while it runs (`running`).
 * Providers come from the caller (`providers` option); this file reads no config and no environment.
 */
import { createHash } from "node:crypto";
import * as cloudflare from "@pulumi/cloudflare";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import * as tailscale from "@pulumi/tailscale";
import { renderUserData } from "./cloud-init.ts";
import { boxFirewallRules, type PortRange } from "./firewall.ts";
import { ROLE_LABEL, resourceName, WORKSPACE_LABEL, WORKSPACE_ROLE } from "./names.ts";

export const COMPONENT_TYPE = "berth:workspace:Workspace";

/** Cloudflare permission groups the bucket token gets, looked up by name (ids are not documented as stable). */
export const R2_PERMISSION_GROUPS = [
  "Workers R2 Storage Bucket Item Read",
  "Workers R2 Storage Bucket Item Write",
] as const;

export interface WorkspaceSecretsInput {
  agentToken: pulumi.Input<string>;
  ttydCredential: pulumi.Input<string>;
  resticPassword: pulumi.Input<string>;
}

export interface WorkspaceArgs {
  workspaceId: string;
  /** `false` hibernates: no server, attachment or tailnet key; the volume and bucket stay. */
  running: boolean;
  /** `false` only on the way to destroy: lifts `protect` and Hetzner's delete protection. Default `true`. */
  protect?: boolean;
  location: string;
  serverType: string;
  volumeSizeGb: number;
  /** Hetzner label selector of the box snapshots (Packer's `snapshot_labels`), e.g. `role=berth-box`. */
  imageSelector: string;
  imageArchitecture?: "x86" | "arm";
  controlPlaneUrl: string;
  controlPlaneCidrs: string[];
  previewPorts?: PortRange;
  sshSourceCidrs?: string[];
  /** A private network (from `infra/`) the box joins, if any. */
  networkId?: number;
  tailnetTags?: string[];
  /** Lifetime of the single-use auth key: the box uses it within minutes of boot. Default one hour. */
  tailnetKeyExpirySeconds?: number;
  cloudflareAccountId: string;
  /** R2 location hint for a new bucket (`weur`, `enam`, …); ignored after creation. */
  bucketLocation?: string;
  /** Prefix of the volume, server, hostname and bucket names. Default `berth`. */
  namePrefix?: string;
  /**
   * The build's W3C `traceparent`, handed to the agent at boot (`BERTH_TRACEPARENT`) so its first heartbeat
   * joins the build's trace. Only a new server reads it: the server ignores later user-data changes.
   */
  traceparent?: string;
  secrets: WorkspaceSecretsInput;
}

function sha256Hex(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}

export function r2Endpoint(accountId: string): string {
  return `https://${accountId}.r2.cloudflarestorage.com`;
}

/** The token's only resource: this one bucket (no jurisdiction, hence `default`). */
export function r2BucketResource(accountId: string, bucket: string): string {
  return `com.cloudflare.edge.r2.bucket.${accountId}_default_${bucket}`;
}

export class Workspace extends pulumi.ComponentResource {
  readonly running: boolean;
  readonly serverId: pulumi.Output<string | undefined>;
  readonly publicIpv4: pulumi.Output<string | undefined>;
  readonly volumeId: pulumi.Output<string>;
  readonly volumeDevice: pulumi.Output<string>;
  readonly bucketName: pulumi.Output<string>;
  readonly firewallId: pulumi.Output<string>;
  readonly resticRepository: pulumi.Output<string>;
  /** S3 access key id for the bucket: the token id. Secret. */
  readonly r2AccessKeyId: pulumi.Output<string>;
  /** S3 secret access key: sha256 (hex) of the token value. Secret. */
  readonly r2SecretAccessKey: pulumi.Output<string>;

  constructor(name: string, args: WorkspaceArgs, opts?: pulumi.ComponentResourceOptions) {
    super(COMPONENT_TYPE, name, {}, opts);
    const id = args.workspaceId;
    const prefix = args.namePrefix ?? "berth";
    const baseName = resourceName(prefix, id);
    const protect = args.protect ?? true;
    const labels = { [WORKSPACE_LABEL]: id, [ROLE_LABEL]: WORKSPACE_ROLE };
    const acct = args.cloudflareAccountId;
    const child = { parent: this };
    this.running = args.running;

    // Persistent: named by the immutable workspace id, protected twice (engine and Hetzner).
    const volume = new hcloud.Volume(
      `${name}-volume`,
      {
        name: baseName,
        size: args.volumeSizeGb,
        location: args.location,
        labels,
        deleteProtection: protect,
      },
      { ...child, protect },
    );
    const bucket = new cloudflare.R2Bucket(
      `${name}-bucket`,
      { accountId: acct, name: baseName, location: args.bucketLocation },
      { ...child, protect },
    );

    const permissionGroupIds = R2_PERMISSION_GROUPS.map((groupName) =>
      cloudflare
        .getAccountApiTokenPermissionGroupsListOutput(
          { accountId: acct, name: encodeURIComponent(groupName) },
          child,
        )
        .apply((list) => {
          const match = list.results.find((r) => r.name === groupName) ?? list.results[0];
          if (!match) throw new Error(`Cloudflare permission group "${groupName}" not found`);
          return match.id;
        }),
    );
    const token = new cloudflare.AccountToken(
      `${name}-r2-token`,
      {
        accountId: acct,
        name: `${baseName}-r2`,
        policies: [
          {
            effect: "allow",
            permissionGroups: permissionGroupIds.map((pgId) => ({ id: pgId })),
            // Since @pulumi/cloudflare 6.12 `resources` is a JSON string.
            resources: bucket.name.apply((b) => JSON.stringify({ [r2BucketResource(acct, b)]: "*" })),
          },
        ],
      },
      { ...child, additionalSecretOutputs: ["value"] },
    );
    this.r2AccessKeyId = pulumi.secret(token.id);
    this.r2SecretAccessKey = pulumi.secret(token.value.apply(sha256Hex));
    this.resticRepository = bucket.name.apply((b) => `s3:${r2Endpoint(acct)}/${b}`);

    const firewall = new hcloud.Firewall(
      `${name}-firewall`,
      {
        name: baseName,
        labels,
        rules: boxFirewallRules({
          controlPlaneCidrs: args.controlPlaneCidrs,
          previewPorts: args.previewPorts,
          sshSourceCidrs: args.sshSourceCidrs,
        }),
      },
      child,
    );

    this.volumeId = volume.id;
    this.volumeDevice = volume.linuxDevice;
    this.bucketName = bucket.name;
    this.firewallId = firewall.id;

    if (!args.running) {
      this.serverId = pulumi.output(undefined);
      this.publicIpv4 = pulumi.output(undefined);
      this.registerOutputs(this.outputMap());
      return;
    }

    const tailnetTags = args.tailnetTags ?? ["tag:workspace"];
    const key = new tailscale.TailnetKey(
      `${name}-tailnet-key`,
      {
        reusable: false,
        preauthorized: true,
        // The node goes away with the server on hibernate; let the tailnet forget it by itself.
        ephemeral: true,
        tags: tailnetTags,
        expiry: args.tailnetKeyExpirySeconds ?? 3600,
        description: `berth ${id}`.slice(0, 50),
        // A used or expired key must not be recreated: that would be a new userData for a running server.
        recreateIfInvalid: "never",
      },
      child,
    );

    const image = hcloud.getImageOutput(
      {
        withSelector: args.imageSelector,
        mostRecent: true,
        withStatuses: ["available"],
        withArchitecture: args.imageArchitecture ?? "x86",
      },
      child,
    );

    const s = args.secrets;
    const userData = pulumi.secret(
      pulumi
        .all([
          volume.linuxDevice,
          this.resticRepository,
          key.key,
          this.r2AccessKeyId,
          this.r2SecretAccessKey,
          s.agentToken,
          s.ttydCredential,
          s.resticPassword,
        ])
        .apply(([device, repository, tsKey, r2Id, r2Secret, agentToken, ttyd, restic]) =>
          renderUserData({
            hostname: baseName,
            settings: {
              BERTH_WORKSPACE_ID: id,
              BERTH_CONTROL_PLANE_URL: args.controlPlaneUrl,
              BERTH_VOLUME_DEVICE: device,
              BERTH_TAILSCALE_TAGS: tailnetTags.join(","),
              BERTH_RESTIC_REPOSITORY: repository,
              ...(args.traceparent ? { BERTH_TRACEPARENT: args.traceparent } : {}),
            },
            credentials: {
              "agent-token": agentToken,
              "ttyd-credential": ttyd,
              "restic-password": restic,
              "r2-access-key-id": r2Id,
              "r2-secret-access-key": r2Secret,
              "tailscale-auth-key": tsKey,
            },
          }),
        ),
    );

    const server = new hcloud.Server(
      `${name}-server`,
      {
        name: baseName,
        serverType: args.serverType,
        location: args.location,
        image: image.apply((img) => String(img.id)),
        userData,
        labels,
        firewallIds: [firewall.id.apply(Number)],
        publicNets: [{ ipv4Enabled: true, ipv6Enabled: true }],
        networks: args.networkId === undefined ? undefined : [{ networkId: args.networkId }],
        // Graceful ACPI shutdown first: systemd unmounts the volume before the VM goes away.
        shutdownBeforeDeletion: true,
      },
      {
        ...child,
        // Both are ForceNew: a new snapshot or a rotated key must not replace a running box. Wake
        // creates a new server anyway, and that one takes the newest image.
        ignoreChanges: ["image", "userData"],
        additionalSecretOutputs: ["userData"],
      },
    );

    new hcloud.VolumeAttachment(
      `${name}-volume-attachment`,
      { volumeId: volume.id.apply(Number), serverId: server.id.apply(Number), automount: false },
      {
        ...child,
        // Without this the engine detaches the volume first, under a running VM that has it mounted.
        // With it, hibernate deletes only the server: shut down (clean unmount), then delete, and Hetzner
        // detaches the volume as part of the server's deletion.
        deletedWith: server,
      },
    );

    this.serverId = server.id;
    this.publicIpv4 = server.ipv4Address;
    this.registerOutputs(this.outputMap());
  }

  private outputMap(): pulumi.Inputs {
    return {
      serverId: this.serverId,
      publicIpv4: this.publicIpv4,
      volumeId: this.volumeId,
      volumeDevice: this.volumeDevice,
      bucketName: this.bucketName,
      firewallId: this.firewallId,
      resticRepository: this.resticRepository,
      r2AccessKeyId: this.r2AccessKeyId,
      r2SecretAccessKey: this.r2SecretAccessKey,
    };
  }
}
