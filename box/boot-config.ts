/**
 * The boot contract between whoever provisions a box (cloud-init from the stack program, or the local
 * driver) and the box agent. Settings arrive as environment variables (systemd `EnvironmentFile=` of
 * `/run/berth/agent.env`); secrets arrive as one file each in `$CREDENTIALS_DIRECTORY` (systemd
 * `LoadCredential=` from `/run/berth/credentials/`), so they never sit in an environment block or argv.
 * Both sides import this file, so the renderer and the agent cannot drift apart.
 *
 * On a VM `/run/berth` is a symlink to `BOOT_FILES_DIR` on the server's root disk (box/README.md, "Reboots"):
 * cloud-init writes the files once per instance, and they must still be there after a reboot empties /run.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";

/** The path every writer and reader uses; the image links it to `BOOT_FILES_DIR` at every boot. */
export const BOOT_LINK = "/run/berth";
/**
 * Where the files really are: root-only (0700) on the root disk, which is destroyed with the server at
 * hibernate, so nothing outlives the instance. cloud-init already keeps the whole user data, every secret
 * in it, under /var/lib/cloud (0600), so this adds no new kind of exposure.
 */
export const BOOT_FILES_DIR = "/var/lib/berth/boot";
export const AGENT_ENV_PATH = `${BOOT_LINK}/agent.env`;
export const CREDENTIALS_SOURCE_DIR = `${BOOT_LINK}/credentials`;

/** Secret file names under `$CREDENTIALS_DIRECTORY`. */
export const REQUIRED_CREDENTIALS = ["agent-token", "ttyd-credential", "restic-password"] as const;
export const OPTIONAL_CREDENTIALS = [
  "r2-access-key-id",
  "r2-secret-access-key",
  "tailscale-auth-key",
] as const;
export type CredentialName = (typeof REQUIRED_CREDENTIALS)[number] | (typeof OPTIONAL_CREDENTIALS)[number];

// One line of a systemd environment file; no quoting, so nothing needs unescaping on either side.
const envValue = z.string().regex(/^[^\s"'\\$`]*$/, "must not contain whitespace, quotes, $, ` or \\");

export const agentSettingsSchema = z.object({
  BERTH_WORKSPACE_ID: z.string().regex(/^[a-z0-9-]{1,64}$/),
  BERTH_CONTROL_PLANE_URL: z.url().pipe(envValue),
  BERTH_WORKSPACE_ROOT: envValue.default("/mnt/workspace"),
  /** Block device of the volume; absent in local mode, where the root is a plain directory. */
  BERTH_VOLUME_DEVICE: envValue.optional(),
  BERTH_BOX_USER: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]{0,31}$/)
    .default("claude"),
  BERTH_TTYD_HOST: envValue.default("0.0.0.0"),
  BERTH_TTYD_PORT: z.coerce.number().int().min(1).max(65535).default(7681),
  /** Loopback port of the agent's own endpoint (Claude Code hooks, health). */
  BERTH_AGENT_PORT: z.coerce.number().int().min(1).max(65535).default(7690),
  BERTH_HOSTNAME: envValue.optional(),
  BERTH_TAILSCALE_TAGS: envValue.default("tag:workspace"),
  /** restic repository, e.g. `s3:https://<account>.r2.cloudflarestorage.com/<bucket>` or a local path. */
  BERTH_RESTIC_REPOSITORY: envValue.optional(),
  /**
   * W3C `traceparent` of the build that started this box: the first heartbeat is a child of it, so the
   * control plane's trace runs from the request through the build to the box checking in.
   */
  BERTH_TRACEPARENT: z
    .string()
    .regex(/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/, "must be a W3C traceparent")
    .optional(),
});
export type AgentSettings = z.infer<typeof agentSettingsSchema>;

export type AgentCredentials = Record<(typeof REQUIRED_CREDENTIALS)[number], string> &
  Partial<Record<(typeof OPTIONAL_CREDENTIALS)[number], string>>;

export interface BootConfig {
  settings: AgentSettings;
  credentials: AgentCredentials;
}

export class BootConfigError extends Error {
  override name = "BootConfigError";
}

/** Renders settings as a systemd environment file, validating every value first. */
export function renderAgentEnv(settings: z.input<typeof agentSettingsSchema>): string {
  const parsed = agentSettingsSchema.parse(settings);
  return `${Object.entries(parsed)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${v}`)
    .join("\n")}\n`;
}

/** Parses the environment file format `renderAgentEnv` writes: `KEY=value` lines, `#` comments. */
export function parseAgentEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new BootConfigError(`agent.env line ${i + 1}: expected KEY=value`);
    out[m[1]!] = m[2]!;
  }
  return out;
}

/** Reads settings from `env` and secrets from `credentialsDir`; names the first problem it finds. */
export function loadBootConfig(
  env: Record<string, string | undefined>,
  credentialsDir: string | undefined,
): BootConfig {
  const settings = agentSettingsSchema.safeParse(env);
  if (!settings.success) {
    const issue = settings.error.issues[0]!;
    throw new BootConfigError(`invalid agent setting ${String(issue.path[0])}: ${issue.message}`);
  }
  if (!credentialsDir)
    throw new BootConfigError("CREDENTIALS_DIRECTORY is not set: the agent has no secrets");
  const read = (name: CredentialName, required: boolean): string | undefined => {
    try {
      const value = readFileSync(join(credentialsDir, name), "utf8").trim();
      if (value === "") throw new BootConfigError(`credential ${name} is empty`);
      return value;
    } catch (err) {
      if (err instanceof BootConfigError) throw err;
      if (required) throw new BootConfigError(`credential ${name} is missing from ${credentialsDir}`);
      return undefined;
    }
  };
  const credentials = {} as AgentCredentials;
  for (const name of REQUIRED_CREDENTIALS) credentials[name] = read(name, true)!;
  for (const name of OPTIONAL_CREDENTIALS) {
    const value = read(name, false);
    if (value !== undefined) credentials[name] = value;
  }
  return { settings: settings.data, credentials };
}
