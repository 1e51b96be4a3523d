/**
 * Chooses and builds the workspace driver from configuration (BERTH_DRIVER). The Pulumi driver's settings
 * are read here, from their own environment variables, so that local mode needs none of them.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import type { WorkspaceDriver } from "../../stacks/driver.ts";
import { LocalDriver } from "../../stacks/local/driver.ts";
import { type Config, ConfigError } from "../platform/config.ts";
import type { Logger } from "../platform/logger.ts";

export const AGENT_ENTRY = fileURLToPath(new URL("../../box/main.ts", import.meta.url));

const csv = z.string().transform((s) =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean),
);

export const PULUMI_ENV_DOCS: Record<string, string> = {
  BERTH_PULUMI_BACKEND_URL:
    "Pulumi state backend, e.g. s3://berth-state?endpoint=https://<acct>.r2.cloudflarestorage.com&region=auto",
  BERTH_PULUMI_BACKEND_ACCESS_KEY_ID:
    "S3/R2 access key for the state bucket (optional for Pulumi Cloud or file://)",
  BERTH_PULUMI_BACKEND_SECRET_ACCESS_KEY: "S3/R2 secret key for the state bucket",
  BERTH_PULUMI_PASSPHRASE:
    "master passphrase; each stack's secrets passphrase is derived from it (keep it safe)",
  HCLOUD_TOKEN: "Hetzner Cloud API token",
  CLOUDFLARE_API_TOKEN: "Cloudflare token: R2 bucket CRUD + Account API Tokens Write",
  CLOUDFLARE_ACCOUNT_ID: "Cloudflare account id owning the R2 buckets",
  TAILSCALE_OAUTH_CLIENT_ID: "Tailscale OAuth client (auth_keys scope, owns tag:workspace)",
  TAILSCALE_OAUTH_CLIENT_SECRET: "Tailscale OAuth client secret",
  BERTH_CONTROL_PLANE_CIDRS: "comma-separated control-plane addresses (/32, /128) the box firewall admits",
  BERTH_IMAGE_SELECTOR: "Hetzner label selector of box snapshots (default berth-role=workspace)",
};

const pulumiEnv = z.object({
  BERTH_PULUMI_BACKEND_URL: z.string().min(1),
  BERTH_PULUMI_BACKEND_ACCESS_KEY_ID: z.string().optional(),
  BERTH_PULUMI_BACKEND_SECRET_ACCESS_KEY: z.string().optional(),
  BERTH_PULUMI_PASSPHRASE: z.string().min(16, "must be at least 16 characters"),
  HCLOUD_TOKEN: z.string().min(1),
  CLOUDFLARE_API_TOKEN: z.string().min(1),
  CLOUDFLARE_ACCOUNT_ID: z.string().regex(/^[0-9a-f]{32}$/, "must be a 32-character hex account id"),
  TAILSCALE_OAUTH_CLIENT_ID: z.string().min(1),
  TAILSCALE_OAUTH_CLIENT_SECRET: z.string().min(1),
  TAILSCALE_TAILNET: z.string().optional(),
  BERTH_CONTROL_PLANE_CIDRS: csv.pipe(
    z.array(z.string().regex(/^[0-9a-f.:]+\/\d{1,3}$/i, "must be CIDRs")).min(1),
  ),
  BERTH_SSH_SOURCE_CIDRS: csv.optional(),
  BERTH_IMAGE_SELECTOR: z.string().default("berth-role=workspace"),
  BERTH_HETZNER_NETWORK_ID: z.coerce.number().int().positive().optional(),
  BERTH_PULUMI_MAX_OPS: z.coerce.number().int().min(1).max(32).default(4),
});

export async function createDriver(
  config: Config,
  log: Logger,
  env: Record<string, string | undefined> = process.env,
): Promise<WorkspaceDriver> {
  if (config.driver === "local") {
    return new LocalDriver({
      root: join(config.dataDir, "workspaces"),
      agentEntry: AGENT_ENTRY,
      nodePath: process.execPath,
      agentEnv: { BERTH_TERMINAL: config.terminal },
      backupS3: config.backups.s3,
    });
  }
  const parsed = pulumiEnv.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v)));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`${String(issue.path[0])}: ${issue.message} (needed by BERTH_DRIVER=pulumi)`);
  }
  const e = parsed.data;
  // Loaded only when chosen: the Pulumi SDK is large, and local mode never needs it.
  const { PulumiDriver } = await import("../../stacks/pulumi/driver.ts");
  const driver = new PulumiDriver({
    backendUrl: e.BERTH_PULUMI_BACKEND_URL,
    backendEnv:
      e.BERTH_PULUMI_BACKEND_ACCESS_KEY_ID && e.BERTH_PULUMI_BACKEND_SECRET_ACCESS_KEY
        ? {
            AWS_ACCESS_KEY_ID: e.BERTH_PULUMI_BACKEND_ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY: e.BERTH_PULUMI_BACKEND_SECRET_ACCESS_KEY,
          }
        : {},
    masterPassphrase: e.BERTH_PULUMI_PASSPHRASE,
    hcloudToken: e.HCLOUD_TOKEN,
    cloudflare: { apiToken: e.CLOUDFLARE_API_TOKEN, accountId: e.CLOUDFLARE_ACCOUNT_ID },
    tailscale: {
      oauthClientId: e.TAILSCALE_OAUTH_CLIENT_ID,
      oauthClientSecret: e.TAILSCALE_OAUTH_CLIENT_SECRET,
      ...(e.TAILSCALE_TAILNET ? { tailnet: e.TAILSCALE_TAILNET } : {}),
    },
    controlPlaneCidrs: e.BERTH_CONTROL_PLANE_CIDRS,
    ...(e.BERTH_SSH_SOURCE_CIDRS ? { sshSourceCidrs: e.BERTH_SSH_SOURCE_CIDRS } : {}),
    ...(e.BERTH_HETZNER_NETWORK_ID ? { networkId: e.BERTH_HETZNER_NETWORK_ID } : {}),
    imageSelector: e.BERTH_IMAGE_SELECTOR,
    defaults: {
      location: config.workspaceDefaults.location,
      serverType: config.workspaceDefaults.serverType,
    },
    maxConcurrentOps: e.BERTH_PULUMI_MAX_OPS,
    workRoot: join(config.dataDir, "pulumi", "work"),
    pulumiHome: join(config.dataDir, "pulumi", "home"),
  });
  log.info("installing Pulumi provider plugins");
  await driver.installPlugins();
  return driver;
}
