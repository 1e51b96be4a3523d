// The Caddyfile for both TLS choices, checked by Caddy itself (Debian's `caddy` package; skipped with the
// reason when it is not installed).
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { run, which } from "../../packer/test/tools.ts";
import { CaddyfileError, type CaddyfileInput, renderCaddyfile } from "./caddyfile.ts";

const caddy = which("caddy");
const modules = caddy ? run(caddy, ["list-modules"]).stdout : "";
const hasCloudflareDns = modules.split("\n").includes("dns.providers.cloudflare");

const base: CaddyfileInput = {
  tls: "dns01",
  apiDomain: "api.berth.example",
  previewDomain: "preview.berthbox.dev",
  upstream: "127.0.0.1:7600",
  acmeEmail: "ops@berth.example",
};

function validate(text: string) {
  const dir = mkdtempSync(join(tmpdir(), "berth-caddy-"));
  const path = join(dir, "Caddyfile");
  writeFileSync(path, text);
  // HOME and XDG dirs in the scratch directory: validation provisions modules, which may touch storage.
  return run(caddy!, ["validate", "--adapter", "caddyfile", "--config", path], {
    env: { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir },
  });
}

/** A self-signed certificate for both names, standing in for the Cloudflare origin certificate. */
function originCertificate(dir: string) {
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=api.berth.example",
      "-addext",
      "subjectAltName=DNS:api.berth.example,DNS:*.preview.berthbox.dev",
      "-keyout",
      join(dir, "caddy_origin-key.pem"),
      "-out",
      join(dir, "caddy_origin.pem"),
    ],
    { stdio: "ignore" },
  );
}

describe("renderCaddyfile", () => {
  it("dns01: the API and the wildcard preview domain, the wildcard through Cloudflare DNS-01, the token from the environment", () => {
    const text = renderCaddyfile(base);
    expect(text).toContain("api.berth.example {\n\treverse_proxy 127.0.0.1:7600\n}");
    expect(text).toContain("*.preview.berthbox.dev {\n\ttls {\n\t\tdns cloudflare {env.CF_API_TOKEN}\n\t}");
    expect(text).toContain("email ops@berth.example");
  });

  it("cloudflare-proxy: one site for both names with the origin certificate, no ACME", () => {
    const text = renderCaddyfile({ ...base, tls: "cloudflare-proxy" });
    expect(text).toContain(
      "api.berth.example, *.preview.berthbox.dev {\n\ttls /run/credentials/caddy.service/caddy_origin.pem /run/credentials/caddy.service/caddy_origin-key.pem",
    );
    expect(text).not.toContain("dns cloudflare");
  });

  it("with the preview-only listener: the wildcard goes there, the API to the main listener, in both TLS choices", () => {
    const dns01 = renderCaddyfile({ ...base, previewUpstream: "127.0.0.1:7601" });
    expect(dns01).toContain("api.berth.example {\n\treverse_proxy 127.0.0.1:7600\n}");
    expect(dns01).toContain(
      "*.preview.berthbox.dev {\n\ttls {\n\t\tdns cloudflare {env.CF_API_TOKEN}\n\t}\n\treverse_proxy 127.0.0.1:7601\n}",
    );
    const proxied = renderCaddyfile({ ...base, tls: "cloudflare-proxy", previewUpstream: "127.0.0.1:7601" });
    const tls =
      "\ttls /run/credentials/caddy.service/caddy_origin.pem /run/credentials/caddy.service/caddy_origin-key.pem\n";
    expect(proxied).toContain(`api.berth.example {\n${tls}\treverse_proxy 127.0.0.1:7600\n}`);
    expect(proxied).toContain(`*.preview.berthbox.dev {\n${tls}\treverse_proxy 127.0.0.1:7601\n}`);
    expect(() => renderCaddyfile({ ...base, previewUpstream: "127.0.0.1:7601 {" })).toThrow(
      /previewUpstream/,
    );
  });

  it("refuses names and addresses that would change the config's meaning", () => {
    expect(() => renderCaddyfile({ ...base, apiDomain: "api.example.com {\n}" })).toThrow(CaddyfileError);
    expect(() => renderCaddyfile({ ...base, previewDomain: "*.x.dev" })).toThrow(/previewDomain/);
    expect(() => renderCaddyfile({ ...base, acmeEmail: "x" })).toThrow(/acmeEmail/);
  });
});

describe.skipIf(!caddy)("caddy validate", () => {
  it("accepts the cloudflare-proxy config (with an origin certificate in place)", () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-origin-"));
    originCertificate(dir);
    const r = validate(renderCaddyfile({ ...base, tls: "cloudflare-proxy", credentialsDir: dir }));
    expect(r.stdout).toContain("Valid configuration");
    expect(r.stderr).toContain("enabling automatic HTTP->HTTPS redirects");
    expect(r.status).toBe(0);
  });

  it("accepts the cloudflare-proxy config with the preview domain on the preview-only listener", () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-origin-"));
    originCertificate(dir);
    const text = renderCaddyfile({
      ...base,
      tls: "cloudflare-proxy",
      credentialsDir: dir,
      previewUpstream: "127.0.0.1:7601",
    });
    const r = validate(text);
    expect(r.stdout).toContain("Valid configuration");
    expect(r.status).toBe(0);
  });

  it.runIf(hasCloudflareDns)("accepts the dns01 config (this caddy has the cloudflare DNS module)", () => {
    const r = validate(renderCaddyfile(base));
    expect(r.stdout).toContain("Valid configuration");
    expect(r.stderr).toContain("enabling automatic HTTP->HTTPS redirects");
    expect(r.status).toBe(0);
  });

  it.runIf(!hasCloudflareDns)(
    "dns01 without the cloudflare DNS module: everything but that one line validates, and the line is what needs the module",
    () => {
      // Debian's caddy has no DNS providers; the host gets a build with caddy-dns/cloudflare (berth-install).
      const text = renderCaddyfile(base);
      const dnsLine = /^\t\tdns cloudflare .*\n/m;
      expect(text).toMatch(dnsLine);
      const full = validate(text);
      expect(full.status).not.toBe(0);
      expect(full.stderr).toMatch(/dns\.providers\.cloudflare|module not registered/);
      // The same config with the DNS-01 issuer swapped for Caddy's internal one: the rest is valid.
      const r = validate(text.replace(dnsLine, "\t\tissuer internal\n"));
      expect(r.stdout).toContain("Valid configuration");
      expect(r.stderr).toContain("enabling automatic HTTP->HTTPS redirects");
      expect(r.status).toBe(0);
      // And with the preview domain on the preview-only listener.
      const split = renderCaddyfile({ ...base, previewUpstream: "127.0.0.1:7601" });
      expect(validate(split.replace(dnsLine, "\t\tissuer internal\n")).status).toBe(0);
    },
  );

  it("rejects a broken config (the validator is really checking)", () => {
    const r = validate(renderCaddyfile(base).replace("reverse_proxy", "reverse_proxyy"));
    expect(r.status).not.toBe(0);
  });
});

describe.runIf(!caddy)("caddy validate (skipped)", () => {
  it("notes why", () => {
    console.warn("caddy is not on PATH: install the Debian package `caddy` to validate the Caddyfile");
  });
});
