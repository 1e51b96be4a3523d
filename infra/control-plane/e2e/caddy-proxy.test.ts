// The rendered Caddyfile run by Debian's caddy in front of a stand-in control plane on loopback (the
// cloudflare-proxy choice, with a self-signed certificate standing in for Cloudflare's origin certificate):
// HTTPS for the API and a preview host, HTTP redirected to HTTPS, a WebSocket upgrade passed through; run
// twice, the second time with a stand-in preview-only listener (BERTH_PREVIEW_LISTEN) that the preview
// domain, and only it, must reach. Skipped with the reason where caddy is not installed.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ClientOptions, WebSocket, WebSocketServer } from "ws";
import { which } from "../../../packer/test/tools.ts";
import { waitFor } from "../../../runtime/test/wait.ts";
import { renderCaddyfile } from "../caddyfile.ts";

const caddyBin = which("caddy");
const API = "api.berth.example";
const PREVIEW = "abc123.preview.berthbox.dev";

async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

let dir: string;
let ca: Buffer;
let caddy: ChildProcess | undefined;
let upstream: ReturnType<typeof createServer>;
let previewUpstream: ReturnType<typeof createServer> | undefined;
const ports = { http: 0, https: 0 };

function get(host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpsRequest(
      { host: "127.0.0.1", port: ports.https, path, servername: host, headers: { host }, ca },
      (res) => {
        let body = "";
        res.on("data", (d) => (body += d)).on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    )
      .on("error", reject)
      .end();
  });
}

for (const previewListener of [false, true])
  describe.skipIf(!caddyBin)(
    `Caddy in front of the control plane (cloudflare-proxy config, for real${previewListener ? ", preview-only listener" : ""})`,
    () => {
      // What a preview host's request reaches: the main listener, or the preview-only one.
      const previewAnswer = previewListener ? `preview listener for ${PREVIEW}` : `ready for ${PREVIEW}`;
      beforeAll(async () => {
        dir = mkdtempSync(join(tmpdir(), "berth-caddy-run-"));
        execFileSync(
          "openssl",
          [
            ...[
              "req",
              "-x509",
              "-newkey",
              "ec",
              "-pkeyopt",
              "ec_paramgen_curve:prime256v1",
              "-nodes",
              "-days",
              "1",
            ],
            ...["-subj", `/CN=${API}`, "-addext", `subjectAltName=DNS:${API},DNS:*.preview.berthbox.dev`],
            ...["-keyout", join(dir, "caddy_origin-key.pem"), "-out", join(dir, "caddy_origin.pem")],
          ],
          { stdio: "ignore" },
        );
        ca = readFileSync(join(dir, "caddy_origin.pem"));

        // The stand-in control plane: /readyz echoes the Host it was asked for; /ws echoes messages.
        upstream = createServer((req, res) => res.end(`ready for ${req.headers.host}`));
        new WebSocketServer({ server: upstream, path: "/ws" }).on("connection", (ws) =>
          ws.on("message", (m) => ws.send(`echo:${m}`)),
        );
        await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
        const up = (upstream.address() as { port: number }).port;
        previewUpstream = undefined;
        if (previewListener) {
          const server = createServer((req, res) => res.end(`preview listener for ${req.headers.host}`));
          previewUpstream = server;
          await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        }
        const previewPort = (previewUpstream?.address() as { port: number } | undefined)?.port;

        ports.http = await freePort();
        ports.https = await freePort();
        const text = renderCaddyfile({
          tls: "cloudflare-proxy",
          apiDomain: API,
          previewDomain: "preview.berthbox.dev",
          upstream: `127.0.0.1:${up}`,
          previewUpstream: previewPort ? `127.0.0.1:${previewPort}` : undefined,
          acmeEmail: "ops@berth.example",
          credentialsDir: dir,
          ports,
        }).replace("{\n", "{\n\tadmin off\n"); // no admin endpoint: nothing else on the machine is disturbed
        const file = join(dir, "Caddyfile");
        writeFileSync(file, text);
        caddy = spawn(caddyBin!, ["run", "--config", file, "--adapter", "caddyfile"], {
          env: { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir },
          stdio: "ignore",
        });
        await waitFor("caddy listening on its HTTPS port", () =>
          get(API, "/readyz").then((r) => r.status === 200),
        );
      });

      afterAll(async () => {
        caddy?.kill();
        await new Promise<void>((r) => upstream?.close(() => r()) ?? r());
        await new Promise<void>((r) => previewUpstream?.close(() => r()) ?? r());
      });

      it("serves the API over HTTPS and passes the Host through", async () => {
        expect(await get(API, "/readyz")).toEqual({ status: 200, body: `ready for ${API}` });
      });

      it("serves a preview host under the wildcard with the same certificate", async () => {
        expect(await get(PREVIEW, "/")).toEqual({ status: 200, body: previewAnswer });
      });

      it("redirects HTTP to HTTPS", async () => {
        const res = await new Promise<{ status: number; location?: string }>((resolve, reject) => {
          httpRequest(
            { host: "127.0.0.1", port: ports.http, path: "/readyz", headers: { host: API } },
            (r) => {
              r.resume();
              resolve({ status: r.statusCode ?? 0, location: r.headers.location });
            },
          )
            .on("error", reject)
            .end();
        });
        expect(res.status).toBe(308);
        // Caddy names the HTTPS URL by host; the port is the site's (443 on the host).
        expect(res.location).toMatch(/^https:\/\/api\.berth\.example(:\d+)?\/readyz$/);
      });

      it("passes a WebSocket upgrade through (terminals, previews and voice use them)", async () => {
        // servername reaches tls.connect (ws passes its options through); its types leave it out.
        const options = { servername: API, headers: { host: API }, ca } as unknown as ClientOptions;
        const ws = new WebSocket(`wss://127.0.0.1:${ports.https}/ws`, options);
        const reply = await new Promise<string>((resolve, reject) => {
          ws.on("open", () => ws.send("keystroke"));
          ws.on("message", (m) => resolve(String(m)));
          ws.on("error", reject);
        });
        ws.close();
        expect(reply).toBe("echo:keystroke");
      });

      it("is not reachable in clear on the HTTPS port", async () => {
        const sock = connect(ports.https, "127.0.0.1");
        const answer = await new Promise<string>((resolve) => {
          sock.on("connect", () => sock.write(`GET /readyz HTTP/1.1\r\nHost: ${API}\r\n\r\n`));
          let data = "";
          sock.on("data", (d) => (data += d));
          sock.on("close", () => resolve(data));
          sock.on("error", () => resolve(data));
        });
        expect(answer).not.toContain("ready for");
      });
    },
  );

describe.runIf(!caddyBin)("Caddy in front of the control plane (skipped)", () => {
  it("notes why", () => {
    console.warn("caddy is not on PATH: install the Debian package `caddy` to run the proxy for real");
  });
});
