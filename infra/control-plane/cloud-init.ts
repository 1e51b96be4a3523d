/**
 * Renders the control-plane host's cloud-init user data, the one place that says what the host gets: the
 * install scripts and units (files/), the settings (`/etc/berth/berth.env`, nothing secret), the release
 * pins (`/etc/berth/release.env`), the Caddyfile, and every secret in a file of its own under a root-only
 * directory that systemd hands to one service through `LoadCredential=`:
 *   /etc/berth/credentials/<ENV_NAME>   → berth.service (berth-start exports each as that variable)
 *   /etc/berth/caddy-credentials/<file> → caddy.service (the DNS token, or the origin certificate's key)
 *   /etc/berth/host-credentials/<file>  → berth-install only (the single-use tailnet key, deleted once used)
 * Nothing secret goes anywhere else; `assertSecretsConfined` checks the rendered document, and only root may
 * read the metadata service that serves it.
 */
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { parse, stringify } from "yaml";
import { lockMetadataService, USER_DATA_LIMIT_BYTES } from "../../stacks/workspace/cloud-init.ts";
import { CADDY_CREDENTIAL_FILES, renderCaddyfile, type TlsMode } from "./caddyfile.ts";

export const CREDENTIALS_DIR = "/etc/berth/credentials";
export const CADDY_CREDENTIALS_SOURCE = "/etc/berth/caddy-credentials";
export const HOST_CREDENTIALS_DIR = "/etc/berth/host-credentials";
const SECRET_DIRS = [CREDENTIALS_DIR, CADDY_CREDENTIALS_SOURCE, HOST_CREDENTIALS_DIR];

/** The control plane's secrets, each named after the environment variable it reads. */
export const REQUIRED_CONTROL_PLANE_CREDENTIALS = [
  "BERTH_SECRET_KEYS",
  "CLERK_SECRET_KEY",
  "BERTH_PULUMI_PASSPHRASE",
  "BERTH_PULUMI_BACKEND_ACCESS_KEY_ID",
  "BERTH_PULUMI_BACKEND_SECRET_ACCESS_KEY",
  "HCLOUD_TOKEN",
  "CLOUDFLARE_API_TOKEN",
  "TAILSCALE_OAUTH_CLIENT_SECRET",
] as const;
export const OPTIONAL_CONTROL_PLANE_CREDENTIALS = [
  // A managed database's URL carries its password; the local one is reached over a socket without one.
  "DATABASE_URL",
  "STRIPE_SECRET_KEY",
  "DEEPGRAM_API_KEY",
] as const;
export type ControlPlaneCredential =
  | (typeof REQUIRED_CONTROL_PLANE_CREDENTIALS)[number]
  | (typeof OPTIONAL_CONTROL_PLANE_CREDENTIALS)[number];

/** The executables and units, shipped as they are in files/ (shellcheck and systemd-analyze check those). */
export const HOST_FILES: readonly { source: string; path: string; permissions: string }[] = [
  { source: "berth-install", path: "/usr/local/sbin/berth-install", permissions: "0755" },
  { source: "berth-release", path: "/usr/local/sbin/berth-release", permissions: "0755" },
  { source: "berth-db-backup", path: "/usr/local/sbin/berth-db-backup", permissions: "0755" },
  { source: "berth-start", path: "/usr/local/lib/berth/berth-start", permissions: "0755" },
  { source: "berth-caddy-start", path: "/usr/local/lib/berth/berth-caddy-start", permissions: "0755" },
  ...[
    "berth.service",
    "berth-upgrade.service",
    "berth-upgrade.timer",
    "berth-db-backup.service",
    "berth-db-backup.timer",
  ].map((unit) => ({ source: `systemd/${unit}`, path: `/etc/systemd/system/${unit}`, permissions: "0644" })),
  {
    source: "systemd/postgresql-berth.conf",
    path: "/etc/systemd/system/postgresql@.service.d/berth.conf",
    permissions: "0644",
  },
  {
    source: "systemd/caddy-berth.conf",
    path: "/etc/systemd/system/caddy.service.d/berth.conf",
    permissions: "0644",
  },
];

export const CONTROL_PLANE_PORT = 7600;
/** The preview-only listener (BERTH_PREVIEW_LISTEN) when the self-hoster turns it on; loopback, behind Caddy. */
export const PREVIEW_LISTENER_PORT = 7601;
/** BERTH_WORKERS' range (runtime/platform/config.ts). */
export const MAX_WORKERS = 64;
/** The local database, reached over Postgres's socket with peer authentication: no password exists. */
export const LOCAL_DATABASE_URL = "postgresql:///berth?host=/var/run/postgresql";

export interface ControlPlaneUserDataInput {
  hostname: string;
  apiDomain: string;
  previewDomain: string;
  release: { version: string; sha256: string; url: string };
  node: { version: string; integrity: string };
  pulumiVersion: string;
  caddy: { tls: TlsMode; version: string; sha256?: string; acmeEmail: string };
  tailnet: { tags: string[] };
  database: { mode: "local"; volumeDevice: string } | { mode: "managed" };
  /** BERTH_WORKERS: control-plane processes sharing the port (default 1). */
  workers?: number;
  /** Run the preview-only listener on PREVIEW_LISTENER_PORT and have Caddy send the preview domain to it. */
  previewListener?: boolean;
  /** Non-secret settings for berth.env, beyond those derived here. */
  settings: Record<string, string>;
  credentials: Partial<Record<ControlPlaneCredential, string>>;
  tailscaleAuthKey: string;
  /** dns01: a token with Zone DNS Edit on the preview zone. */
  cloudflareDnsToken?: string;
  /** cloudflare-proxy: the origin certificate and its key. */
  origin?: { certificate: string; privateKey: string };
}

export class ControlPlaneUserDataError extends Error {
  override name = "ControlPlaneUserDataError";
}

const fail = (message: string): never => {
  throw new ControlPlaneUserDataError(message);
};

/**
 * Control-plane processes on the host. More than one is safe here: what config.ts requires for it
 * (DATABASE_URL, BERTH_SECRET_KEYS, a fixed BERTH_PORT) the host always has. Thrown as soon as the stack
 * config is read, before any resource.
 */
export function assertWorkers(workers: number): void {
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_WORKERS) {
    fail(`workers must be a whole number from 1 to ${MAX_WORKERS}, not ${workers}`);
  }
}

const ENV_NAME = /^[A-Z][A-Z0-9_]*$/;
// What a systemd EnvironmentFile reads as it is, unquoted: no spaces, quotes or expansions. `sh .` (the
// scripts source release.env) also needs no shell operators.
const UNIT_SAFE = /^[A-Za-z0-9_./:,@+=%{}~&?-]*$/;
const SHELL_SAFE = /^[A-Za-z0-9_./:,@+=%{}~-]*$/;

/** KEY=value lines, unquoted. */
function envFile(values: Record<string, string>, safe = UNIT_SAFE): string {
  return Object.entries(values)
    .map(([k, v]) => {
      if (!ENV_NAME.test(k)) fail(`setting name ${JSON.stringify(k)} is not an environment variable name`);
      if (!safe.test(v)) fail(`setting ${k} has a character the env file cannot hold`);
      return `${k}=${v}\n`;
    })
    .join("");
}

function readHostFile(source: string): string {
  return readFileSync(new URL(`./files/${source}`, import.meta.url), "utf8");
}

/** Where each secret value may appear: the path of the one file that holds it. */
export function secretFiles(input: ControlPlaneUserDataInput): Map<string, string> {
  const files = new Map<string, string>();
  for (const [name, value] of Object.entries(input.credentials)) {
    if (value !== undefined) files.set(`${CREDENTIALS_DIR}/${name}`, value);
  }
  files.set(`${HOST_CREDENTIALS_DIR}/tailscale-auth-key`, input.tailscaleAuthKey);
  if (input.cloudflareDnsToken) {
    files.set(
      `${CADDY_CREDENTIALS_SOURCE}/${CADDY_CREDENTIAL_FILES.cloudflareDnsToken}`,
      input.cloudflareDnsToken,
    );
  }
  if (input.origin) {
    files.set(
      `${CADDY_CREDENTIALS_SOURCE}/${CADDY_CREDENTIAL_FILES.originPrivateKey}`,
      input.origin.privateKey,
    );
  }
  return files;
}

interface CloudConfig {
  write_files: { path: string; content: string }[];
  [key: string]: unknown;
}

/**
 * Every place outside the secret directories where one of `secrets` appears in the rendered user data:
 * in the parsed document (any file, any command) and in the raw text (more occurrences than the files hold).
 */
export function secretsOutsideCredentialFiles(userData: string, secrets: readonly string[]): string[] {
  const doc = parse(userData) as CloudConfig;
  const found: string[] = [];
  const inSecretDir = (path: string) => SECRET_DIRS.some((d) => path.startsWith(`${d}/`));
  for (const secret of secrets) {
    for (const f of doc.write_files ?? []) {
      if (!inSecretDir(f.path) && f.content.includes(secret)) found.push(f.path);
    }
    for (const [key, value] of Object.entries(doc)) {
      if (key !== "write_files" && JSON.stringify(value).includes(secret)) found.push(key);
    }
    // YAML may quote or fold a value; its longest alphanumeric run survives any of that. The raw text may
    // hold it only as often as the secret files' contents do (two secrets may share a run).
    const core = (secret.match(/[A-Za-z0-9]+/g) ?? []).reduce((a, b) => (b.length > a.length ? b : a), "");
    const count = (text: string) => text.split(core).length - 1;
    const held = (doc.write_files ?? [])
      .filter((f) => inSecretDir(f.path))
      .reduce((n, f) => n + count(f.content), 0);
    if (core.length >= 8 && count(userData) > held) found.push("(raw text)");
  }
  return [...new Set(found)];
}

export function renderControlPlaneUserData(input: ControlPlaneUserDataInput): string {
  for (const name of REQUIRED_CONTROL_PLANE_CREDENTIALS) {
    if (!input.credentials[name]) fail(`credential ${name} is required`);
  }
  const known: readonly string[] = [
    ...REQUIRED_CONTROL_PLANE_CREDENTIALS,
    ...OPTIONAL_CONTROL_PLANE_CREDENTIALS,
  ];
  for (const [name, value] of Object.entries(input.credentials)) {
    if (!known.includes(name)) fail(`unknown credential ${name}`);
    if (value !== undefined && (value === "" || value.trim() !== value)) {
      fail(`credential ${name} is empty or has surrounding whitespace`);
    }
  }
  if (input.database.mode === "managed" && !input.credentials.DATABASE_URL) {
    fail("a managed database needs the DATABASE_URL credential");
  }
  if (input.database.mode === "local" && input.credentials.DATABASE_URL) {
    fail("DATABASE_URL is given: set database mode to managed, or leave it out for the local database");
  }
  if (input.caddy.tls === "dns01" && !input.cloudflareDnsToken)
    fail("dns01 TLS needs a Cloudflare DNS token");
  if (input.caddy.tls === "cloudflare-proxy" && !input.origin) {
    fail("cloudflare-proxy TLS needs the origin certificate and key");
  }
  if (!/^[0-9a-f]{64}$/.test(input.release.sha256))
    fail("release sha256 must be 64 lower-case hex characters");
  if (!input.release.url.includes("{version}")) fail("release url must contain {version}");
  const workers = input.workers ?? 1;
  assertWorkers(workers);
  const previewListen = input.previewListener ? `127.0.0.1:${PREVIEW_LISTENER_PORT}` : undefined;

  const settings = envFile({
    BERTH_HOST: "127.0.0.1",
    BERTH_PORT: String(CONTROL_PLANE_PORT),
    BERTH_DATA_DIR: "/var/lib/berth",
    BERTH_PUBLIC_URL: `https://${input.apiDomain}`,
    BERTH_PREVIEW_DOMAIN: input.previewDomain,
    BERTH_DRIVER: "pulumi",
    // The host is on the tailnet: terminal and preview traffic to boxes stays inside WireGuard.
    BERTH_BOX_PATHS: "tailnet,public",
    HOME: "/var/lib/berth",
    PULUMI_HOME: "/var/lib/berth/pulumi",
    PATH: "/opt/berth/pulumi:/opt/berth/node/bin:/usr/bin:/bin",
    ...(input.database.mode === "local" ? { DATABASE_URL: LOCAL_DATABASE_URL } : {}),
    // Written even at 1, so the line to edit on the host (berth.env) is already there.
    BERTH_WORKERS: String(workers),
    ...(previewListen ? { BERTH_PREVIEW_LISTEN: previewListen } : {}),
    ...input.settings,
  });
  const release = envFile(
    {
      BERTH_VERSION: input.release.version,
      BERTH_SHA256: input.release.sha256,
      BERTH_RELEASE_URL: input.release.url,
      BERTH_PORT: String(CONTROL_PLANE_PORT),
      NODE_VERSION: input.node.version,
      NODE_INTEGRITY: input.node.integrity,
      PULUMI_VERSION: input.pulumiVersion,
      CADDY_MODE: input.caddy.tls,
      CADDY_VERSION: input.caddy.version,
      ...(input.caddy.sha256 ? { CADDY_SHA256: input.caddy.sha256 } : {}),
      DB_MODE: input.database.mode,
      ...(input.database.mode === "local" ? { DB_VOLUME_DEVICE: input.database.volumeDevice } : {}),
      TAILSCALE_HOSTNAME: input.hostname,
      TAILSCALE_TAGS: input.tailnet.tags.join(","),
    },
    SHELL_SAFE,
  );
  const caddyfile = renderCaddyfile({
    tls: input.caddy.tls,
    apiDomain: input.apiDomain,
    previewDomain: input.previewDomain,
    upstream: `127.0.0.1:${CONTROL_PLANE_PORT}`,
    previewUpstream: previewListen,
    acmeEmail: input.caddy.acmeEmail,
  });

  const plain = (path: string, content: string, permissions = "0644") => ({
    path,
    owner: "root:root",
    permissions,
    content,
  });
  const secrets = secretFiles(input);
  const config = {
    hostname: input.hostname,
    preserve_hostname: false,
    // Before write_files, on every boot: the secrets' directories exist root-only before any secret lands.
    bootcmd: [
      ["install", "-d", "-m", "0755", "-o", "root", "-g", "root", "/etc/berth"],
      ["install", "-d", "-m", "0700", "-o", "root", "-g", "root", ...SECRET_DIRS],
      ["sh", "-c", lockMetadataService],
    ],
    write_files: [
      ...[...secrets].map(([path, content]) => plain(path, content, "0600")),
      ...(input.origin
        ? [
            plain(
              `${CADDY_CREDENTIALS_SOURCE}/${CADDY_CREDENTIAL_FILES.originCertificate}`,
              input.origin.certificate,
              "0600",
            ),
          ]
        : []),
      plain("/etc/berth/berth.env", settings),
      plain("/etc/berth/release.env", release),
      plain("/etc/berth/Caddyfile", caddyfile),
      // Compressed (cloud-init's gz+b64): the scripts are most of the document, and Hetzner's limit is 32 KiB.
      ...HOST_FILES.map((f) => ({
        ...plain(f.path, gzipSync(readHostFile(f.source), { level: 9 }).toString("base64"), f.permissions),
        encoding: "gz+b64",
      })),
    ],
    runcmd: [["/usr/local/sbin/berth-install"]],
  };
  const userData = `#cloud-config\n${stringify(config, { lineWidth: 0 })}`;
  const leaks = secretsOutsideCredentialFiles(userData, [...secrets.values()]);
  if (leaks.length > 0) fail(`a secret appears outside its credential file: ${leaks.join(", ")}`);
  const size = Buffer.byteLength(userData, "utf8");
  if (size > USER_DATA_LIMIT_BYTES) {
    fail(`user data is ${size} bytes; Hetzner accepts at most ${USER_DATA_LIMIT_BYTES}`);
  }
  return userData;
}
