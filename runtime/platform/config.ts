/**
 * Control-plane configuration, read once from the environment at start. Every variable is documented in
 * the README and in `berth --help`; a bad value stops startup with one line naming the variable.
 */
import { isIP } from "node:net";
import { resolve } from "node:path";
import { getDomain } from "tldts";
import { z } from "zod";
import { type Plan, parsePlans, UNLIMITED_PLANS } from "./billing-plans.ts";
import { type ClerkFrontend, clerkFrontend, frontendApiFromPublishableKey } from "./clerk-frontend.ts";

const csv = z
  .string()
  .transform((s) =>
    s
      .split(",")
      .map((x) => x.trim())
      .filter(Boolean),
  )
  .pipe(z.array(z.string()));

const httpUrl = z.url({ protocol: /^https?$/, error: "must be an http(s) URL" });

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "::1", "localhost"]);

export const ENV_DOCS: Record<string, string> = {
  BERTH_HOST: "address to bind (default 127.0.0.1; local mode refuses anything but loopback)",
  BERTH_PORT: "port to listen on (default 7600)",
  BERTH_DATA_DIR: "where local state lives: embedded Postgres, generated keys, workspaces (default ./.berth)",
  BERTH_PUBLIC_URL: "URL clients use to reach the control plane (default http://<host>:<port>)",
  BERTH_WEB_ORIGINS: "comma-separated origins allowed to open sockets (default: the public URL's origin)",
  DATABASE_URL: "Postgres to use; unset starts embedded Postgres under BERTH_DATA_DIR",
  BERTH_LOCAL_TOKEN: "local mode: preset owner API token (>= 32 chars); unset generates one per start",
  BERTH_SECRET_KEYS:
    "secret-box keys as kid:base64(32 bytes),... (first encrypts, all decrypt); local mode generates one",
  CLERK_SECRET_KEY: "hosted mode: Clerk secret key (JWKS fetched with it)",
  CLERK_JWT_KEY: "hosted mode: Clerk PEM public key for networkless verification",
  BERTH_AUTHORIZED_PARTIES: "hosted mode: comma-separated origins accepted in the token's azp (required)",
  CLERK_PUBLISHABLE_KEY:
    "hosted mode: Clerk publishable key (pk_test_/pk_live_) for web sign-in; public by design; unset: API tokens only",
  CLERK_JS_URL:
    "hosted mode: where the web client loads clerk-js from (default https://<Frontend API>/npm/@clerk/clerk-js@6/dist/clerk.browser.js)",
  CLERK_UI_URL:
    "hosted mode: where the web client loads Clerk's sign-in components from (default https://<Frontend API>/npm/@clerk/ui@1/dist/ui.browser.js)",
  BERTH_DRIVER: "workspace driver: local (default; single-tenant, local mode only) or pulumi",
  BERTH_BUILD_CONCURRENCY: "builds one control-plane process runs at once (default 2)",
  BERTH_DEFAULT_LOCATION: "Hetzner location for new workspaces (default fsn1)",
  BERTH_DEFAULT_SERVER_TYPE: "Hetzner server type for new workspaces (default cx22)",
  BERTH_DEFAULT_VOLUME_GB: "volume size for new workspaces, 10-10240 (default 20)",
  BERTH_MAX_WORKSPACES_PER_USER: "live workspaces one user may have (default 1)",
  BERTH_PREVIEW_DOMAIN:
    "previews' own hosts, <previewId>.<domain>; default preview.localhost in local mode; in hosted mode use another registrable domain than the API's so preview code never shares a site with it (unset: path form /api/v1/previews/<id>/ only)",
  BERTH_PREVIEW_LISTEN:
    "host:port of a second listener that serves the preview domain only (host form, its sign-in paths and HMR sockets; any other host is a 404 page, never the API), for a front proxy that sends *.<preview domain> there; unset: previews share the API's listener",
  BERTH_WORKERS:
    "control-plane processes on this host, 1-64 (default 1); more than one shares BERTH_PORT through SO_REUSEPORT, each a full replica coordinating through Postgres; needs DATABASE_URL, BERTH_SECRET_KEYS, a fixed BERTH_PORT and, in local mode, BERTH_LOCAL_TOKEN",
  BERTH_TERMINAL:
    "local driver: the boxes' terminal endpoint: auto (default: ttyd if one is on PATH, else the built-in server), builtin, or the path of a ttyd binary",
  BERTH_BOX_PATHS:
    "how the control plane reaches boxes, primary first: public,tailnet (default), tailnet,public, tailnet or public; put tailnet first when the control plane is on the tailnet, so terminal and preview traffic stays inside WireGuard",
  BERTH_BILLING_PLANS:
    'billing plans as JSON: {"<name>":{"includedMinutes":600|null,"maxRunning":1|null,"boxSizes":["cx22"]|null,"overage":"billed"|"stop"},...} (default: one unlimited plan)',
  BERTH_BILLING_DEFAULT_PLAN:
    "plan of users who have none set (default: the first plan in BERTH_BILLING_PLANS)",
  STRIPE_SECRET_KEY: "Stripe secret key: compute minutes are sent to Stripe Billing Meters only when set",
  STRIPE_WEBHOOK_SECRET:
    "signing secret (whsec_...) of the endpoint /api/v1/billing/webhooks; unset refuses webhooks",
  STRIPE_METER_API:
    "how minutes are sent: v2 (default; the meter event stream, 100 per call) or v1 (billing.meterEvents.create, one per call)",
  STRIPE_METER_EVENT_NAME: "event name of the compute-minute meter in Stripe (default berth_compute_minute)",
  BERTH_METRICS_TOKEN:
    "bearer token /metrics requires (Prometheus `authorization: {credentials: ...}`); unset: /metrics is open, so bind privately or filter it",
  BERTH_METRICS_PER_WORKSPACE:
    "1: /metrics also exposes box telemetry per workspace (one series per live box and figure); default 0, fleet aggregates only",
  BERTH_DISK_WARN_PERCENT:
    "volume disk usage (percent) at which a box's owner is notified once (default 90; re-armed 5 points below)",
  BERTH_LOG_LEVEL: "pino level: fatal, error, warn, info (default), debug, trace, silent",
  OTEL_EXPORTER_OTLP_ENDPOINT:
    "OTLP/HTTP base URL (e.g. http://collector:4318): spans go to <url>/v1/traces; unset: tracing off (no SDK)",
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:
    "full OTLP/HTTP traces URL; overrides OTEL_EXPORTER_OTLP_ENDPOINT for spans",
  OTEL_SERVICE_NAME: "service.name of the spans (default berth-control-plane)",
  BERTH_LOG_RETENTION_DAYS:
    "days the central log store keeps lines, 1-365 (default 7); whole days are dropped",
  BERTH_LOG_OTLP_ENDPOINT:
    "also ship stored log lines to this OTLP/HTTP logs URL (e.g. Loki's http://loki:3100/otlp/v1/logs); default OTEL_EXPORTER_OTLP_LOGS_ENDPOINT; unset: none",
  OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: "full OTLP/HTTP logs URL, used when BERTH_LOG_OTLP_ENDPOINT is unset",
  BERTH_AGENT_LOG_STDOUT:
    "1: also print box agents' shipped lines on the control plane's stdout (debugging; default: stored only)",
  BERTH_VAPID_PUBLIC_KEY:
    "Web Push VAPID public key (base64url, `npx web-push generate-vapid-keys`); set it with the private key on every replica; unset: generated into BERTH_DATA_DIR/vapid-keys.json",
  BERTH_VAPID_PRIVATE_KEY: "Web Push VAPID private key (base64url), with BERTH_VAPID_PUBLIC_KEY",
  BERTH_VAPID_SUBJECT:
    "Web Push contact for push services, mailto: or https: (default: the https public URL, else mailto:berth@localhost)",
  DEEPGRAM_API_KEY:
    "Deepgram API key (Member role or higher) for voice input; never leaves the server; unset turns voice off",
  BERTH_DEEPGRAM_URL:
    "Deepgram API base URL (default https://api.deepgram.com); its wss form serves live streams",
  BERTH_VOICE_DAILY_SECONDS: "voice seconds one user may transcribe per UTC day (default 3600)",
  BERTH_BACKUP_REPOSITORY:
    "local driver: where workspace backups go, an S3-compatible base s3:https://host/bucket[/prefix] (each workspace gets <base>/<id>); default: a restic repository per workspace under the data dir",
  BERTH_BACKUP_ACCESS_KEY_ID: "S3 access key for BERTH_BACKUP_REPOSITORY",
  BERTH_BACKUP_SECRET_ACCESS_KEY: "S3 secret key for BERTH_BACKUP_REPOSITORY",
  BERTH_BACKUP_PRE_STOP_SECONDS:
    "how long a hibernate or destroy waits for its pre-stop backup before it goes on without it (default 300; 0 turns it off)",
};

const schema = z
  .object({
    BERTH_HOST: z.string().min(1).default("127.0.0.1"),
    BERTH_PORT: z.coerce
      .number({ error: "must be a port number" })
      .int("must be a port number")
      .min(0, "must be between 0 and 65535")
      .max(65535, "must be between 0 and 65535")
      .default(7600),
    BERTH_DATA_DIR: z.string().min(1).default(".berth"),
    BERTH_PUBLIC_URL: z.url().optional(),
    BERTH_WEB_ORIGINS: csv.optional(),
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
      .optional(),
    BERTH_LOCAL_TOKEN: z.string().min(32, "must be at least 32 characters").optional(),
    BERTH_SECRET_KEYS: z.string().optional(),
    CLERK_SECRET_KEY: z.string().startsWith("sk_", "must start with sk_").optional(),
    CLERK_JWT_KEY: z
      .string()
      .includes("BEGIN PUBLIC KEY", { message: "must be a PEM public key" })
      .optional(),
    BERTH_AUTHORIZED_PARTIES: csv.optional(),
    CLERK_PUBLISHABLE_KEY: z
      .string()
      .regex(/^pk_(test|live)_/, "must start with pk_test_ or pk_live_")
      .refine((k) => frontendApiFromPublishableKey(k) !== null, {
        message: "is malformed: its base64 part must decode to the Frontend API host followed by $",
      })
      .optional(),
    CLERK_JS_URL: httpUrl.optional(),
    CLERK_UI_URL: httpUrl.optional(),
    BERTH_DRIVER: z.enum(["local", "pulumi"]).default("local"),
    BERTH_BUILD_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(2),
    BERTH_DEFAULT_LOCATION: z
      .string()
      .regex(/^[a-z0-9-]{2,32}$/)
      .default("fsn1"),
    BERTH_DEFAULT_SERVER_TYPE: z
      .string()
      .regex(/^[a-z0-9-]{2,32}$/)
      .default("cx22"),
    BERTH_DEFAULT_VOLUME_GB: z.coerce.number().int().min(10).max(10240).default(20),
    BERTH_MAX_WORKSPACES_PER_USER: z.coerce.number().int().min(1).max(1000).default(1),
    BERTH_PREVIEW_DOMAIN: z
      .string()
      .toLowerCase()
      .regex(/^(?=.{1,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/, {
        message: "must be a DNS name with at least two labels, without scheme or port",
      })
      .optional(),
    BERTH_PREVIEW_LISTEN: z
      .string()
      .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):([0-9]{1,5})$/, {
        message: "must be host:port, e.g. 127.0.0.1:7601",
      })
      .refine((v) => Number(v.slice(v.lastIndexOf(":") + 1)) <= 65535, {
        message: "port must be at most 65535",
      })
      .optional(),
    BERTH_WORKERS: z.coerce
      .number({ error: "must be a whole number" })
      .int("must be a whole number")
      .min(1, "must be between 1 and 64")
      .max(64, "must be between 1 and 64")
      .default(1),
    BERTH_TERMINAL: z
      .string()
      .refine((v) => v === "auto" || v === "builtin" || v.startsWith("/"), {
        message: "must be auto, builtin or an absolute path to a ttyd binary",
      })
      .default("auto"),
    BERTH_BOX_PATHS: z
      .enum(["public,tailnet", "tailnet,public", "tailnet", "public"], {
        error: "must be one of public,tailnet / tailnet,public / tailnet / public",
      })
      .default("public,tailnet"),
    BERTH_BILLING_PLANS: z
      .string()
      .transform((text, ctx) => {
        try {
          return parsePlans(text);
        } catch (err) {
          ctx.addIssue({ code: "custom", message: (err as Error).message });
          return z.NEVER;
        }
      })
      .optional(),
    BERTH_BILLING_DEFAULT_PLAN: z.string().optional(),
    STRIPE_SECRET_KEY: z
      .string()
      .regex(/^(sk|rk)_(test|live)_/, "must start with sk_test_, sk_live_, rk_test_ or rk_live_")
      .optional(),
    STRIPE_WEBHOOK_SECRET: z.string().startsWith("whsec_", "must start with whsec_").optional(),
    STRIPE_METER_API: z.enum(["v1", "v2"], { error: "must be v1 or v2" }).default("v2"),
    STRIPE_METER_EVENT_NAME: z
      .string()
      .regex(/^[a-z0-9_]{1,100}$/, "must be 1-100 of a-z, 0-9 and _")
      .default("berth_compute_minute"),
    BERTH_METRICS_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
    BERTH_METRICS_PER_WORKSPACE: z.enum(["0", "1"], { error: "must be 0 or 1" }).default("0"),
    BERTH_DISK_WARN_PERCENT: z.coerce
      .number({ error: "must be a percentage" })
      .min(50, "must be between 50 and 99")
      .max(99, "must be between 50 and 99")
      .default(90),
    BERTH_LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    OTEL_EXPORTER_OTLP_ENDPOINT: httpUrl.optional(),
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: httpUrl.optional(),
    OTEL_SERVICE_NAME: z.string().min(1).max(100).default("berth-control-plane"),
    BERTH_LOG_RETENTION_DAYS: z.coerce
      .number({ error: "must be a whole number of days" })
      .int("must be a whole number of days")
      .min(1, "must be between 1 and 365")
      .max(365, "must be between 1 and 365")
      .default(7),
    BERTH_LOG_OTLP_ENDPOINT: httpUrl.optional(),
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: httpUrl.optional(),
    BERTH_AGENT_LOG_STDOUT: z.enum(["0", "1"], { error: "must be 0 or 1" }).default("0"),
    BERTH_VAPID_PUBLIC_KEY: z
      .string()
      .regex(/^[A-Za-z0-9_-]{80,100}$/, "must be a base64url P-256 public key")
      .optional(),
    BERTH_VAPID_PRIVATE_KEY: z
      .string()
      .regex(/^[A-Za-z0-9_-]{40,50}$/, "must be a base64url P-256 private key")
      .optional(),
    BERTH_VAPID_SUBJECT: z
      .string()
      .regex(/^(mailto:|https:\/\/)\S+$/, "must be a mailto: or https:// contact")
      .optional(),
    DEEPGRAM_API_KEY: z.string().min(16, "must be a Deepgram API key").optional(),
    BERTH_DEEPGRAM_URL: httpUrl.default("https://api.deepgram.com"),
    BERTH_VOICE_DAILY_SECONDS: z.coerce.number().int().min(0).max(86_400).default(3600),
    BERTH_BACKUP_REPOSITORY: z
      .string()
      .regex(/^s3:https?:\/\/[^\s"'\\$`]+$/, "must be s3:http(s)://host/bucket[/prefix]")
      .optional(),
    BERTH_BACKUP_ACCESS_KEY_ID: z.string().optional(),
    BERTH_BACKUP_SECRET_ACCESS_KEY: z.string().optional(),
    BERTH_BACKUP_PRE_STOP_SECONDS: z.coerce.number().int().min(0).max(3600).default(300),
  })
  .superRefine((env, ctx) => {
    if (Boolean(env.BERTH_VAPID_PUBLIC_KEY) !== Boolean(env.BERTH_VAPID_PRIVATE_KEY)) {
      ctx.addIssue({
        code: "custom",
        path: [env.BERTH_VAPID_PUBLIC_KEY ? "BERTH_VAPID_PRIVATE_KEY" : "BERTH_VAPID_PUBLIC_KEY"],
        message: "is required with the other VAPID key (set both, or neither to generate them)",
      });
    }
    if (env.BERTH_BACKUP_REPOSITORY)
      for (const key of ["BERTH_BACKUP_ACCESS_KEY_ID", "BERTH_BACKUP_SECRET_ACCESS_KEY"] as const)
        if (!env[key])
          ctx.addIssue({ code: "custom", path: [key], message: "is required with BERTH_BACKUP_REPOSITORY" });
    const hosted = Boolean(env.CLERK_SECRET_KEY || env.CLERK_JWT_KEY);
    const plans = env.BERTH_BILLING_PLANS ?? UNLIMITED_PLANS;
    if (
      env.BERTH_BILLING_DEFAULT_PLAN !== undefined &&
      !Object.hasOwn(plans, env.BERTH_BILLING_DEFAULT_PLAN)
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["BERTH_BILLING_DEFAULT_PLAN"],
        message: `names no plan of BERTH_BILLING_PLANS (plans: ${Object.keys(plans).join(", ")})`,
      });
    }
    if (hosted && !env.BERTH_AUTHORIZED_PARTIES?.length) {
      ctx.addIssue({
        code: "custom",
        path: ["BERTH_AUTHORIZED_PARTIES"],
        message: "is required in hosted mode (Clerk configured): list the web origins allowed in azp",
      });
    }
    if (hosted && !env.BERTH_SECRET_KEYS) {
      ctx.addIssue({
        code: "custom",
        path: ["BERTH_SECRET_KEYS"],
        message: "is required in hosted mode: every replica must seal and open secrets with the same keys",
      });
    }
    for (const name of ["CLERK_PUBLISHABLE_KEY", "CLERK_JS_URL", "CLERK_UI_URL"] as const) {
      if (!hosted && env[name]) {
        ctx.addIssue({
          code: "custom",
          path: [name],
          message: "is a hosted-mode setting: set CLERK_SECRET_KEY or CLERK_JWT_KEY too",
        });
      }
    }
    if (!hosted && !LOOPBACK_HOSTS.has(env.BERTH_HOST)) {
      ctx.addIssue({
        code: "custom",
        path: ["BERTH_HOST"],
        message:
          "local mode binds loopback only (127.0.0.1, ::1 or localhost); configure Clerk for hosted mode",
      });
    }
    const apiHost = env.BERTH_PUBLIC_URL ? new URL(env.BERTH_PUBLIC_URL).hostname : env.BERTH_HOST;
    const preview = env.BERTH_PREVIEW_DOMAIN;
    if (
      preview &&
      (apiHost === preview || apiHost.endsWith(`.${preview}`) || preview.endsWith(`.${apiHost}`))
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["BERTH_PREVIEW_DOMAIN"],
        message: `must not contain or sit under the API host ${apiHost}: preview code would share its site and cookies`,
      });
    } else if (
      preview &&
      hosted &&
      getDomain(preview) !== null &&
      getDomain(preview) === getDomain(apiHost)
    ) {
      // Siblings under one registrable domain are one site: a preview's script could set a cookie for the
      // parent domain (a planted `__session`) that the API host then receives.
      ctx.addIssue({
        code: "custom",
        path: ["BERTH_PREVIEW_DOMAIN"],
        message: `must be on another registrable domain than the API host ${apiHost} (both are under ${getDomain(apiHost)}): preview code would share its site and cookies`,
      });
    }
    const previewListenHost = env.BERTH_PREVIEW_LISTEN?.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
    if (!hosted && previewListenHost !== undefined && !LOOPBACK_HOSTS.has(previewListenHost)) {
      ctx.addIssue({
        code: "custom",
        path: ["BERTH_PREVIEW_LISTEN"],
        message: "local mode binds loopback only (127.0.0.1, ::1 or localhost)",
      });
    }
    if (env.BERTH_PREVIEW_LISTEN && !env.BERTH_PREVIEW_DOMAIN && hosted) {
      ctx.addIssue({
        code: "custom",
        path: ["BERTH_PREVIEW_LISTEN"],
        message: "serves the preview domain: set BERTH_PREVIEW_DOMAIN too",
      });
    }
    // Every process must share what one process would otherwise make up for itself at start.
    const missing = [
      !env.DATABASE_URL && "DATABASE_URL (embedded Postgres belongs to one process)",
      env.BERTH_PORT === 0 && "a fixed BERTH_PORT (not 0) to share",
      !env.BERTH_SECRET_KEYS && "BERTH_SECRET_KEYS (else each process would generate its own)",
      !hosted && !env.BERTH_LOCAL_TOKEN && "BERTH_LOCAL_TOKEN (else each process would generate its own)",
    ].filter(Boolean);
    if (env.BERTH_WORKERS > 1 && missing.length > 0) {
      ctx.addIssue({
        code: "custom",
        path: ["BERTH_WORKERS"],
        message: `more than one process needs ${missing.join(", ")}`,
      });
    }
    if (!hosted && env.BERTH_HOST !== "localhost" && !isIP(env.BERTH_HOST)) {
      ctx.addIssue({ code: "custom", path: ["BERTH_HOST"], message: "must be an IP address" });
    }
    // Local boxes are processes of this machine's user: every user's terminal would be a shell on the
    // control plane's host, next to the other users' boxes.
    if (hosted && env.BERTH_DRIVER === "local") {
      ctx.addIssue({
        code: "custom",
        path: ["BERTH_DRIVER"],
        message:
          "the local driver is single-tenant and cannot serve hosted (Clerk) mode: set BERTH_DRIVER=pulumi, or unset CLERK_SECRET_KEY and CLERK_JWT_KEY",
      });
    }
  });

export type AuthConfig =
  | { mode: "local"; localToken: string | undefined }
  | {
      mode: "hosted";
      secretKey: string | undefined;
      jwtKey: string | undefined;
      authorizedParties: string[];
      /** Web sign-in through Clerk's browser SDK; null without CLERK_PUBLISHABLE_KEY (API tokens only). */
      web: ClerkFrontend | null;
    };

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  publicUrl: string | undefined;
  webOrigins: string[] | undefined;
  databaseUrl: string | undefined;
  secretKeys: string | undefined;
  auth: AuthConfig;
  driver: "local" | "pulumi";
  buildConcurrency: number;
  workspaceDefaults: { location: string; serverType: string; volumeSizeGb: number; maxPerUser: number };
  /** Host form of previews, `<previewId>.<previewDomain>`; undefined turns the host form off. */
  previewDomain: string | undefined;
  /** BERTH_PREVIEW_LISTEN: a second listener for the preview domain only. */
  previewListen: { host: string; port: number } | undefined;
  /** BERTH_WORKERS: control-plane processes sharing the port (cli.ts forks them). */
  workers: number;
  /** Paths to a box, primary first (boxnet/path-resolver.ts). */
  boxPaths: Array<"public" | "tailnet">;
  /** Local driver: which terminal endpoint its box agents run (BERTH_TERMINAL). */
  terminal: string;
  logLevel: string;
  /** /metrics: its bearer token (null: open), and whether box telemetry gets one series per workspace. */
  metrics: { token: string | null; perWorkspace: boolean };
  /** The disk-nearly-full notification's threshold, percent of the box's volume used. */
  diskWarnPercent: number;
  /** OpenTelemetry: where spans go (null: tracing off) and under which service name. */
  tracing: { tracesUrl: string | null; serviceName: string };
  /** The central log store: retention, an optional OTLP logs URL, and whether agent lines also go to stdout. */
  logStore: { retentionDays: number; otlpUrl: string | null; agentLinesToStdout: boolean };
  /** Web Push VAPID keys and contact from the environment; unset keys are generated into the data dir. */
  vapid: { publicKey: string | undefined; privateKey: string | undefined; subject: string | undefined };
  /** Voice input (domain/voice): off without a Deepgram key. */
  voice: { apiKey: string | undefined; deepgramUrl: string; dailySeconds: number };
  billing: BillingConfig;
  /** Local driver: an S3 base for backups (else a repository under the data dir); the pre-stop budget. */
  backups: {
    s3: { base: string; accessKeyId: string; secretAccessKey: string } | null;
    preStopSeconds: number;
  };
}

export interface BillingConfig {
  plans: Record<string, Plan>;
  defaultPlan: string;
  /** null: nothing is sent to Stripe (minutes are still metered and shown). */
  stripeSecretKey: string | null;
  /** null: the webhook endpoint refuses every request. */
  stripeWebhookSecret: string | null;
  meterEventName: string;
  meterApi: "v1" | "v2";
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Empty strings mean "unset": shells and .env files produce them for optional variables.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0] ?? "environment");
    const shown =
      name in ENV_DOCS && !/TOKEN|KEY|SECRET|URL/.test(name) ? ` (got ${JSON.stringify(env[name])})` : "";
    throw new ConfigError(`${name}: ${issue.message}${shown}`);
  }
  const e = parsed.data;
  const hosted = Boolean(e.CLERK_SECRET_KEY || e.CLERK_JWT_KEY);
  return {
    host: e.BERTH_HOST,
    port: e.BERTH_PORT,
    dataDir: resolve(e.BERTH_DATA_DIR),
    publicUrl: e.BERTH_PUBLIC_URL,
    webOrigins: e.BERTH_WEB_ORIGINS,
    databaseUrl: e.DATABASE_URL,
    secretKeys: e.BERTH_SECRET_KEYS,
    auth: hosted
      ? {
          mode: "hosted",
          secretKey: e.CLERK_SECRET_KEY,
          jwtKey: e.CLERK_JWT_KEY,
          authorizedParties: e.BERTH_AUTHORIZED_PARTIES ?? [],
          web: e.CLERK_PUBLISHABLE_KEY
            ? clerkFrontend(e.CLERK_PUBLISHABLE_KEY, {
                clerkJsUrl: e.CLERK_JS_URL,
                clerkUiUrl: e.CLERK_UI_URL,
              })
            : null,
        }
      : { mode: "local", localToken: e.BERTH_LOCAL_TOKEN },
    driver: e.BERTH_DRIVER,
    buildConcurrency: e.BERTH_BUILD_CONCURRENCY,
    workspaceDefaults: {
      location: e.BERTH_DEFAULT_LOCATION,
      serverType: e.BERTH_DEFAULT_SERVER_TYPE,
      volumeSizeGb: e.BERTH_DEFAULT_VOLUME_GB,
      maxPerUser: e.BERTH_MAX_WORKSPACES_PER_USER,
    },
    // Browsers resolve *.localhost to loopback, so local mode gets previews on their own origin for free.
    previewDomain: e.BERTH_PREVIEW_DOMAIN ?? (hosted ? undefined : "preview.localhost"),
    previewListen: e.BERTH_PREVIEW_LISTEN
      ? {
          host: e.BERTH_PREVIEW_LISTEN.slice(0, e.BERTH_PREVIEW_LISTEN.lastIndexOf(":")).replace(
            /^\[(.*)\]$/,
            "$1",
          ),
          port: Number(e.BERTH_PREVIEW_LISTEN.slice(e.BERTH_PREVIEW_LISTEN.lastIndexOf(":") + 1)),
        }
      : undefined,
    workers: e.BERTH_WORKERS,
    boxPaths: e.BERTH_BOX_PATHS.split(",") as Array<"public" | "tailnet">,
    terminal: e.BERTH_TERMINAL,
    logLevel: e.BERTH_LOG_LEVEL,
    metrics: { token: e.BERTH_METRICS_TOKEN ?? null, perWorkspace: e.BERTH_METRICS_PER_WORKSPACE === "1" },
    diskWarnPercent: e.BERTH_DISK_WARN_PERCENT,
    tracing: {
      tracesUrl:
        e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
        (e.OTEL_EXPORTER_OTLP_ENDPOINT
          ? `${e.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, "")}/v1/traces`
          : null),
      serviceName: e.OTEL_SERVICE_NAME,
    },
    logStore: {
      retentionDays: e.BERTH_LOG_RETENTION_DAYS,
      otlpUrl: e.BERTH_LOG_OTLP_ENDPOINT ?? e.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT ?? null,
      agentLinesToStdout: e.BERTH_AGENT_LOG_STDOUT === "1",
    },
    vapid: {
      publicKey: e.BERTH_VAPID_PUBLIC_KEY,
      privateKey: e.BERTH_VAPID_PRIVATE_KEY,
      subject: e.BERTH_VAPID_SUBJECT,
    },
    billing: {
      plans: e.BERTH_BILLING_PLANS ?? UNLIMITED_PLANS,
      defaultPlan: e.BERTH_BILLING_DEFAULT_PLAN ?? Object.keys(e.BERTH_BILLING_PLANS ?? UNLIMITED_PLANS)[0]!,
      stripeSecretKey: e.STRIPE_SECRET_KEY ?? null,
      stripeWebhookSecret: e.STRIPE_WEBHOOK_SECRET ?? null,
      meterEventName: e.STRIPE_METER_EVENT_NAME,
      meterApi: e.STRIPE_METER_API,
    },
    voice: {
      apiKey: e.DEEPGRAM_API_KEY,
      deepgramUrl: e.BERTH_DEEPGRAM_URL.replace(/\/+$/, ""),
      dailySeconds: e.BERTH_VOICE_DAILY_SECONDS,
    },
    backups: {
      s3: e.BERTH_BACKUP_REPOSITORY
        ? {
            base: e.BERTH_BACKUP_REPOSITORY,
            accessKeyId: e.BERTH_BACKUP_ACCESS_KEY_ID ?? "",
            secretAccessKey: e.BERTH_BACKUP_SECRET_ACCESS_KEY ?? "",
          }
        : null,
      preStopSeconds: e.BERTH_BACKUP_PRE_STOP_SECONDS,
    },
  };
}
