/**
 * The inline Pulumi program for one workspace. The driver builds its input from the database row and the
 * control plane's credentials and hands it over by closure: nothing goes through `setConfig` (which would
 * put secrets on a command line) and nothing is read from `process.env` (shared by concurrent programs).
 */
import * as cloudflare from "@pulumi/cloudflare";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import * as tailscale from "@pulumi/tailscale";
import { Workspace, type WorkspaceArgs } from "./component.ts";

export interface ProviderCredentials {
  hcloudToken: string;
  cloudflareApiToken: string;
  tailscale: { oauthClientId: string; oauthClientSecret: string; tailnet?: string };
}

export interface WorkspaceProgramInput extends Omit<WorkspaceArgs, "secrets"> {
  secrets: { agentToken: string; ttydCredential: string; resticPassword: string };
  credentials: ProviderCredentials;
}

/** Stack outputs, by name: the driver reads exactly these. */
export interface WorkspaceStackOutputs {
  running: boolean;
  serverId?: string;
  publicIpv4?: string;
  volumeId: string;
  volumeDevice: string;
  bucketName: string;
  firewallId: string;
  resticRepository: string;
  r2AccessKeyId: string;
  r2SecretAccessKey: string;
}

export const SECRET_OUTPUTS = ["r2AccessKeyId", "r2SecretAccessKey"] as const;

type Outputs = { [K in keyof WorkspaceStackOutputs]-?: pulumi.Input<WorkspaceStackOutputs[K]> };

export function workspaceProgram(input: WorkspaceProgramInput): () => Promise<Outputs> {
  return async () => {
    const { credentials: c, secrets, ...args } = input;
    // Explicit providers: their credentials are secret inputs, encrypted in state with the stack's key.
    const providers = [
      new hcloud.Provider("hcloud", { token: pulumi.secret(c.hcloudToken) }),
      new cloudflare.Provider("cloudflare", { apiToken: pulumi.secret(c.cloudflareApiToken) }),
      new tailscale.Provider("tailscale", {
        oauthClientId: c.tailscale.oauthClientId,
        oauthClientSecret: pulumi.secret(c.tailscale.oauthClientSecret),
        tailnet: c.tailscale.tailnet,
      }),
    ];
    const ws = new Workspace(
      "workspace",
      {
        ...args,
        secrets: {
          agentToken: pulumi.secret(secrets.agentToken),
          ttydCredential: pulumi.secret(secrets.ttydCredential),
          resticPassword: pulumi.secret(secrets.resticPassword),
        },
      },
      { providers },
    );
    return {
      running: ws.running,
      serverId: ws.serverId,
      publicIpv4: ws.publicIpv4,
      volumeId: ws.volumeId,
      volumeDevice: ws.volumeDevice,
      bucketName: ws.bucketName,
      firewallId: ws.firewallId,
      resticRepository: ws.resticRepository,
      r2AccessKeyId: ws.r2AccessKeyId,
      r2SecretAccessKey: ws.r2SecretAccessKey,
    };
  };
}
