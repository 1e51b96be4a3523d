/**
 * `berth doctor`: checks a self-hoster's configuration before anything is created, one line per check with
 * what to fix. Each credential gets one harmless read call to its provider; then the DNS records, the box
 * snapshot, the Pulumi state backend, whether /metrics has a token (a warning only), and the clock. It
 * reads the same environment as `serve` (plus the optional STRIPE_SECRET_KEY and DEEPGRAM_API_KEY), and
 * every provider's base URL can be overridden, so it can be pointed at a proxy, or at fake providers in
 * tests. Values are never printed.
 */
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { signV4 } from "../../stacks/pulumi/r2.ts";

export const DOCTOR_ENV_DOCS: Record<string, string> = {
  STRIPE_SECRET_KEY: "Stripe secret key (billing); unset: the check is skipped",
  DEEPGRAM_API_KEY: "Deepgram API key (voice); unset: the check is skipped",
  HCLOUD_ENDPOINT: "Hetzner Cloud API base (default https://api.hetzner.cloud/v1)",
  CLOUDFLARE_API_URL: "Cloudflare API base (default https://api.cloudflare.com/client/v4)",
  TAILSCALE_BASE_URL: "Tailscale API base (default https://api.tailscale.com)",
  CLERK_API_URL: "Clerk Backend API base (default https://api.clerk.com)",
  STRIPE_API_URL: "Stripe API base (default https://api.stripe.com)",
  DEEPGRAM_API_URL: "Deepgram API base (default https://api.deepgram.com)",
  BERTH_DOH_URL:
    "DNS-over-HTTPS JSON resolver for the DNS checks (default https://cloudflare-dns.com/dns-query)",
  BERTH_DOCTOR_MAX_SKEW_SECONDS: "largest clock difference to the providers' clocks accepted (default 30)",
};

/** `warn`: worth fixing, but nothing fails because of it (the exit code stays 0). */
export type Status = "ok" | "fail" | "skip" | "warn";
export interface CheckResult {
  name: string;
  status: Status;
  /** What was found; never a credential's value. */
  detail: string;
  /** What to do about a failure. */
  fix?: string;
}

type Env = Record<string, string | undefined>;

class CheckFailed extends Error {
  readonly fix: string;
  constructor(message: string, fix: string) {
    super(message);
    this.fix = fix;
  }
}

const base = (env: Env, name: string, fallback: string) => (env[name] || fallback).replace(/\/+$/, "");

/** Server clocks seen in responses (Date headers), for the skew check. */
interface Seen {
  serverDates: number[];
}

async function call(seen: Seen, url: string, init: RequestInit = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) });
  } catch (err) {
    const host = new URL(url).host;
    throw new CheckFailed(
      `cannot reach ${host}: ${(err as Error).cause ?? (err as Error).message}`,
      `check this machine's network and DNS, and any *_URL override, for ${host}`,
    );
  }
  const date = res.headers.get("date");
  if (date && !Number.isNaN(Date.parse(date))) seen.serverDates.push(Date.parse(date));
  return res;
}

function need(env: Env, name: string, what: string): string {
  const v = env[name];
  if (!v) throw new CheckFailed(`${name} is not set`, `set ${name} (${what})`);
  return v;
}

function rejected(res: Response, name: string, fix: string): never {
  throw new CheckFailed(`${name} was refused (HTTP ${res.status})`, fix);
}

type Check = {
  name: string;
  /** Runs after these checks, and is skipped unless they passed. */
  after?: string[];
  /** Optional credential: skipped when unset. */
  optional?: string;
  run(env: Env, seen: Seen): Promise<string>;
};

const CHECKS: Check[] = [
  {
    name: "hetzner",
    async run(env, seen) {
      const token = need(env, "HCLOUD_TOKEN", "a Hetzner Cloud API token, Read & Write");
      const res = await call(
        seen,
        `${base(env, "HCLOUD_ENDPOINT", "https://api.hetzner.cloud/v1")}/servers?per_page=1`,
        {
          headers: { authorization: `Bearer ${token}` },
        },
      );
      if (!res.ok) {
        rejected(
          res,
          "HCLOUD_TOKEN",
          "create a Read & Write token in the Hetzner console (Security → API tokens) and set HCLOUD_TOKEN",
        );
      }
      return "token accepted";
    },
  },
  {
    name: "box-image",
    after: ["hetzner"],
    async run(env, seen) {
      const selector = env.BERTH_IMAGE_SELECTOR || "berth-role=workspace";
      const url = new URL(`${base(env, "HCLOUD_ENDPOINT", "https://api.hetzner.cloud/v1")}/images`);
      url.searchParams.set("type", "snapshot");
      url.searchParams.set("label_selector", selector);
      const res = await call(seen, url.href, { headers: { authorization: `Bearer ${env.HCLOUD_TOKEN}` } });
      if (!res.ok) rejected(res, "HCLOUD_TOKEN", "the token cannot list images: use a Read & Write token");
      const { images } = (await res.json()) as { images?: { id: number; name?: string }[] };
      if (!images?.length) {
        throw new CheckFailed(
          `no snapshot matches ${selector}`,
          "build the box image (packer build packer/, see packer/README.md) or fix BERTH_IMAGE_SELECTOR",
        );
      }
      return `${images.length} snapshot(s) match ${selector}`;
    },
  },
  {
    name: "cloudflare",
    async run(env, seen) {
      const token = need(env, "CLOUDFLARE_API_TOKEN", "a Cloudflare API token");
      const account = need(env, "CLOUDFLARE_ACCOUNT_ID", "the account that owns the R2 buckets");
      const res = await call(
        seen,
        `${base(env, "CLOUDFLARE_API_URL", "https://api.cloudflare.com/client/v4")}/accounts/${encodeURIComponent(account)}/r2/buckets?per_page=1`,
        { headers: { authorization: `Bearer ${token}` } },
      );
      if (!res.ok) {
        rejected(
          res,
          "CLOUDFLARE_API_TOKEN (with CLOUDFLARE_ACCOUNT_ID)",
          `give the token Workers R2 Storage Write and Account API Tokens Write on account ${account}, or fix CLOUDFLARE_ACCOUNT_ID`,
        );
      }
      return "token accepted; it can list R2 buckets";
    },
  },
  {
    name: "state-backend",
    async run(env, seen) {
      const raw = need(
        env,
        "BERTH_PULUMI_BACKEND_URL",
        "the Pulumi state backend: the infra stack's stateBackendUrl output",
      );
      const url = new URL(raw);
      if (url.protocol === "file:") {
        const dir = fileURLToPath(url);
        try {
          await access(dir, constants.W_OK);
        } catch {
          throw new CheckFailed(
            `${dir} is not a writable directory`,
            `create ${dir} or point BERTH_PULUMI_BACKEND_URL elsewhere`,
          );
        }
        return `${dir} is writable`;
      }
      if (url.protocol !== "s3:")
        return `${url.protocol}// backend: checked by the Pulumi CLI at its first run`;
      const endpoint = url.searchParams.get("endpoint");
      if (!endpoint)
        throw new CheckFailed(
          "the s3:// URL has no endpoint",
          "use the infra stack's stateBackendUrl output",
        );
      const keyId = need(
        env,
        "BERTH_PULUMI_BACKEND_ACCESS_KEY_ID",
        "the infra stack's stateAccessKeyId output",
      );
      const secret = need(
        env,
        "BERTH_PULUMI_BACKEND_SECRET_ACCESS_KEY",
        "the infra stack's stateSecretAccessKey output",
      );
      const list = new URL(`${endpoint.replace(/\/+$/, "")}/${url.host}`);
      list.searchParams.set("list-type", "2");
      list.searchParams.set("max-keys", "1");
      const payloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; // sha256("")
      const headers: Record<string, string> = {
        host: list.host,
        "x-amz-content-sha256": payloadHash,
        "x-amz-date": new Date()
          .toISOString()
          .replace(/[-:]/g, "")
          .replace(/\.\d{3}/, ""),
      };
      const authorization = signV4(
        { method: "GET", url: list, headers, payloadHash },
        { accessKeyId: keyId, secretAccessKey: secret, region: url.searchParams.get("region") ?? "auto" },
      );
      const { host: _host, ...sent } = headers;
      const res = await call(seen, list.href, { headers: { ...sent, authorization } });
      if (!res.ok) {
        rejected(
          res,
          "the state bucket's keys",
          "set BERTH_PULUMI_BACKEND_ACCESS_KEY_ID and BERTH_PULUMI_BACKEND_SECRET_ACCESS_KEY from `pulumi stack output --show-secrets` (stateAccessKeyId, stateSecretAccessKey)",
        );
      }
      return `bucket ${url.host} is reachable and its keys are accepted`;
    },
  },
  {
    name: "tailscale",
    async run(env, seen) {
      const id = need(env, "TAILSCALE_OAUTH_CLIENT_ID", "a Tailscale OAuth client id");
      const secret = need(env, "TAILSCALE_OAUTH_CLIENT_SECRET", "the OAuth client's secret");
      const api = base(env, "TAILSCALE_BASE_URL", "https://api.tailscale.com");
      const token = await call(seen, `${api}/api/v2/oauth/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ client_id: id, client_secret: secret, grant_type: "client_credentials" }),
      });
      const fix =
        "create an OAuth client (Tailscale admin → Settings → OAuth clients) with the auth_keys scope and tag:control-plane, and set TAILSCALE_OAUTH_CLIENT_ID/SECRET";
      if (!token.ok) rejected(token, "the Tailscale OAuth client", fix);
      const { access_token } = (await token.json()) as { access_token?: string };
      const tailnet = encodeURIComponent(env.TAILSCALE_TAILNET || "-");
      const keys = await call(seen, `${api}/api/v2/tailnet/${tailnet}/keys`, {
        headers: { authorization: `Bearer ${access_token}` },
      });
      if (!keys.ok) rejected(keys, "the Tailscale OAuth client's token", `${fix} (it needs auth_keys)`);
      return "OAuth client accepted; it can read auth keys";
    },
  },
  {
    name: "clerk",
    async run(env, seen) {
      const key = need(env, "CLERK_SECRET_KEY", "the Clerk secret key, sk_live_…");
      const res = await call(seen, `${base(env, "CLERK_API_URL", "https://api.clerk.com")}/v1/jwks`, {
        headers: { authorization: `Bearer ${key}` },
      });
      if (!res.ok)
        rejected(
          res,
          "CLERK_SECRET_KEY",
          "copy the secret key from the Clerk dashboard (API keys) of this instance",
        );
      return "secret key accepted";
    },
  },
  {
    name: "stripe",
    optional: "STRIPE_SECRET_KEY",
    async run(env, seen) {
      const res = await call(seen, `${base(env, "STRIPE_API_URL", "https://api.stripe.com")}/v1/balance`, {
        headers: { authorization: `Bearer ${env.STRIPE_SECRET_KEY}` },
      });
      if (!res.ok)
        rejected(
          res,
          "STRIPE_SECRET_KEY",
          "copy a secret (sk_) or restricted (rk_) key with balance read from the Stripe dashboard",
        );
      return "secret key accepted";
    },
  },
  {
    name: "deepgram",
    optional: "DEEPGRAM_API_KEY",
    async run(env, seen) {
      const res = await call(
        seen,
        `${base(env, "DEEPGRAM_API_URL", "https://api.deepgram.com")}/v1/projects`,
        {
          headers: { authorization: `Token ${env.DEEPGRAM_API_KEY}` },
        },
      );
      if (!res.ok)
        rejected(
          res,
          "DEEPGRAM_API_KEY",
          "create an API key in the Deepgram console and set DEEPGRAM_API_KEY",
        );
      return "API key accepted";
    },
  },
  {
    name: "dns",
    async run(env, seen) {
      const publicUrl = need(
        env,
        "BERTH_PUBLIC_URL",
        "the control plane's https:// URL, the infra stack's url output",
      );
      const preview = env.BERTH_PREVIEW_DOMAIN;
      const names = [new URL(publicUrl).hostname, ...(preview ? [`berth-doctor-check.${preview}`] : [])];
      const doh = base(env, "BERTH_DOH_URL", "https://cloudflare-dns.com/dns-query");
      const found: string[] = [];
      for (const name of names) {
        const url = new URL(doh);
        url.searchParams.set("name", name);
        url.searchParams.set("type", "A");
        const res = await call(seen, url.href, { headers: { accept: "application/dns-json" } });
        const body = res.ok ? ((await res.json()) as { Answer?: { type: number; data: string }[] }) : {};
        const addresses = (body.Answer ?? []).filter((a) => a.type === 1).map((a) => a.data);
        if (addresses.length === 0) {
          throw new CheckFailed(
            `${name} has no A record`,
            "run `pulumi up` on the infra stack (it creates the API and wildcard preview records), then wait for DNS",
          );
        }
        found.push(`${name} → ${addresses.join(",")}`);
      }
      return found.join("; ");
    },
  },
];

/** Runs every check; the clock check last, from the Date headers the others received. */
export async function runDoctor(
  env: Env = process.env,
  now: () => number = Date.now,
): Promise<CheckResult[]> {
  const seen: Seen = { serverDates: [] };
  const results: CheckResult[] = [];
  for (const check of CHECKS) {
    const blocked = (check.after ?? []).filter((n) => results.find((r) => r.name === n)?.status !== "ok");
    if (blocked.length > 0) {
      results.push({
        name: check.name,
        status: "skip",
        detail: `needs a passing ${blocked.join(", ")} check`,
      });
      continue;
    }
    if (check.optional && !env[check.optional]) {
      results.push({ name: check.name, status: "skip", detail: `${check.optional} is not set` });
      continue;
    }
    try {
      results.push({ name: check.name, status: "ok", detail: await check.run(env, seen) });
    } catch (err) {
      if (!(err instanceof CheckFailed)) throw err;
      results.push({ name: check.name, status: "fail", detail: err.message, fix: err.fix });
    }
  }
  results.push(metricsTokenCheck(env));
  const maxSkew = Number(env.BERTH_DOCTOR_MAX_SKEW_SECONDS || 30);
  if (seen.serverDates.length === 0) {
    results.push({ name: "clock", status: "skip", detail: "no provider answered with its time" });
  } else {
    // Date headers have one-second resolution; the median ignores one odd server.
    const sorted = seen.serverDates.map((d) => (d - now()) / 1000).sort((a, b) => a - b);
    const skew = sorted[Math.floor(sorted.length / 2)]!;
    results.push(
      Math.abs(skew) <= maxSkew
        ? {
            name: "clock",
            status: "ok",
            detail: `within ${Math.ceil(Math.abs(skew))}s of the providers' clocks`,
          }
        : {
            name: "clock",
            status: "fail",
            detail: `${Math.round(skew)}s off the providers' clocks`,
            fix: "enable time sync (timedatectl set-ntp true; systemd-timesyncd or chrony): tokens and certificates are time-bound",
          },
    );
  }
  return results;
}

/** A hosted control plane's /metrics is reachable from the internet: without a token anyone can read it. */
function metricsTokenCheck(env: Env): CheckResult {
  if (env.BERTH_METRICS_TOKEN)
    return {
      name: "metrics",
      status: "ok",
      detail: "/metrics requires the BERTH_METRICS_TOKEN bearer token",
    };
  return {
    name: "metrics",
    status: "warn",
    detail: "BERTH_METRICS_TOKEN is not set: /metrics is open to anyone who reaches the control plane",
    fix: "set BERTH_METRICS_TOKEN (16+ characters) and give Prometheus the same bearer token, or filter /metrics at the proxy",
  };
}

export function formatResults(results: CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length));
  return results
    .map((r) => {
      const mark = { ok: "ok  ", skip: "skip", warn: "warn", fail: "FAIL" }[r.status];
      return `${mark}  ${r.name.padEnd(width)}  ${r.detail}${r.fix ? ` → fix: ${r.fix}` : ""}\n`;
    })
    .join("");
}
