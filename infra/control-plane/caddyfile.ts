/**
 * The control-plane host's Caddy configuration: TLS for the API and the wildcard preview domain in front of
 * the control plane on loopback (the preview domain on the preview-only listener when the host runs one).
 * Caddy's automatic HTTPS redirects HTTP to HTTPS, and `reverse_proxy` passes WebSocket upgrades
 * (terminals, previews, voice) through as they are.
 *
 * Two TLS choices:
 * - `dns01` (the default): Caddy gets Let's Encrypt certificates itself, the wildcard through the DNS-01
 *   challenge on Cloudflare. TLS ends on our host, so terminal keystrokes, previews and voice are never
 *   decrypted by a third party; `*.preview.<domain>` (a second-level wildcard, which Cloudflare's free
 *   Universal SSL does not cover) works; and long-idle terminal sockets are not cut by a proxy's timeout.
 *   It needs a Caddy build with the caddy-dns/cloudflare module (berth-install fetches it from Caddy's
 *   build service; Debian's package has no DNS providers).
 * - `cloudflare-proxy`: DNS records proxied by Cloudflare, which terminates the visitors' TLS; Caddy serves
 *   a Cloudflare origin certificate (Full (strict) mode). Debian's own caddy suffices, but Cloudflare sees
 *   every byte, and the wildcard is covered for free only when the preview domain is its zone's apex.
 */

export type TlsMode = "dns01" | "cloudflare-proxy";
export const TLS_MODES: readonly TlsMode[] = ["dns01", "cloudflare-proxy"];

/** Where systemd puts caddy.service's credentials (caddy-berth.conf: LoadCredential=caddy:<dir>). */
export const CADDY_CREDENTIALS_DIR = "/run/credentials/caddy.service";
/** The credential files, by name, under /etc/berth/caddy-credentials on the host. */
export const CADDY_CREDENTIAL_FILES = {
  cloudflareDnsToken: "cloudflare-dns-token",
  originCertificate: "origin.pem",
  originPrivateKey: "origin-key.pem",
} as const;

export interface CaddyfileInput {
  tls: TlsMode;
  apiDomain: string;
  previewDomain: string;
  /** The control plane, e.g. `127.0.0.1:7600`. */
  upstream: string;
  /**
   * The control plane's preview-only listener (BERTH_PREVIEW_LISTEN), e.g. `127.0.0.1:7601`: the wildcard
   * preview domain goes there, so preview traffic and API traffic are separate sockets, and a request on a
   * preview host cannot reach an API route (that listener answers 404). Unset: previews go to `upstream`.
   */
  previewUpstream?: string;
  /** Let's Encrypt account contact (dns01). */
  acmeEmail: string;
  /** Overridable for validation on a machine without systemd credentials. */
  credentialsDir?: string;
  /** Listen ports other than 80/443 (for running the config where those are taken); unset on the host. */
  ports?: { http: number; https: number };
}

const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

export class CaddyfileError extends Error {
  override name = "CaddyfileError";
}

export function renderCaddyfile(input: CaddyfileInput): string {
  for (const [name, domain] of [
    ["apiDomain", input.apiDomain],
    ["previewDomain", input.previewDomain],
  ] as const) {
    if (!DOMAIN.test(domain)) throw new CaddyfileError(`${name} ${JSON.stringify(domain)} is not a DNS name`);
  }
  if (!/^[\w.-]+@[\w.-]+$/.test(input.acmeEmail)) {
    throw new CaddyfileError(`acmeEmail ${JSON.stringify(input.acmeEmail)} is not an e-mail address`);
  }
  for (const [name, upstream] of [
    ["upstream", input.upstream],
    ["previewUpstream", input.previewUpstream ?? input.upstream],
  ] as const) {
    if (!/^[\w.:[\]-]+$/.test(upstream)) throw new CaddyfileError(`${name} must be host:port`);
  }
  const dir = input.credentialsDir ?? CADDY_CREDENTIALS_DIR;
  // LoadCredential on a directory names each file caddy_<file>.
  const cred = (file: string) => `${dir}/caddy_${file}`;
  const proxy = `\treverse_proxy ${input.upstream}\n`;
  const previewProxy = `\treverse_proxy ${input.previewUpstream ?? input.upstream}\n`;
  const wildcard = `*.${input.previewDomain}`;

  const ports = input.ports
    ? `\thttp_port ${Math.trunc(input.ports.http)}\n\thttps_port ${Math.trunc(input.ports.https)}\n`
    : "";
  const globals = `{\n\temail ${input.acmeEmail}\n${ports}}\n`;
  if (input.tls === "dns01") {
    return [
      globals,
      `${input.apiDomain} {\n${proxy}}\n`,
      // The token is read from the environment when the config loads (berth-caddy-start exports it from
      // Caddy's systemd credential); it never sits in this file.
      `${wildcard} {\n\ttls {\n\t\tdns cloudflare {env.CF_API_TOKEN}\n\t}\n${previewProxy}}\n`,
    ].join("\n");
  }
  // Cloudflare connects to us; no ACME here, the origin certificate covers both names.
  const tls = `\ttls ${cred(CADDY_CREDENTIAL_FILES.originCertificate)} ${cred(CADDY_CREDENTIAL_FILES.originPrivateKey)}\n`;
  if (previewProxy === proxy)
    return [globals, `${input.apiDomain}, ${wildcard} {\n${tls}${proxy}}\n`].join("\n");
  return [globals, `${input.apiDomain} {\n${tls}${proxy}}\n`, `${wildcard} {\n${tls}${previewProxy}}\n`].join(
    "\n",
  );
}
