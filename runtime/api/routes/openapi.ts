/**
 * `GET /api/v1/openapi.json`, the document generated from the routes' own declarations, and
 * `GET /api/v1/docs`, a page rendered here from that document: no script, no CDN, works offline.
 */
import { z } from "zod";
import type { ApiRouter } from "../context.ts";
import { doc } from "../openapi/doc.ts";
import { buildOpenApiDocument, type DocumentOptions } from "../openapi/document.ts";

type Json = Record<string, unknown>;

const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const pretty = (value: unknown) => `<pre>${esc(JSON.stringify(value, null, 2))}</pre>`;

/** The docs page: operations grouped by tag, each with its parameters, body and responses. */
export function renderDocsPage(document: Json): string {
  const info = document.info as { title: string; version: string; description: string };
  const paths = document.paths as Record<string, Record<string, Json>>;
  const byTag = new Map<string, string[]>();
  for (const [path, methods] of Object.entries(paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = (op.tags as string[])[0]!;
      const ws = op["x-websocket"] ? " <span class=tag>WebSocket</span>" : "";
      const responses = op.responses as Record<string, Json>;
      const sse = responses["200"]?.["x-sse-events"] ? " <span class=tag>SSE</span>" : "";
      const auth = (op.security as unknown[]).length ? "" : " <span class=tag>public</span>";
      const parts = [
        `<section id="${esc(op.operationId)}"><h3><code class="m ${method}">${method.toUpperCase()}</code> <code>${esc(path)}</code>${ws}${sse}${auth}</h3>`,
        `<p>${esc(op.summary)}</p>`,
        op.description ? `<p>${esc(op.description)}</p>` : "",
        op.parameters ? `<details><summary>Parameters</summary>${pretty(op.parameters)}</details>` : "",
        op.requestBody ? `<details><summary>Request body</summary>${pretty(op.requestBody)}</details>` : "",
        `<details><summary>Responses: ${Object.keys(responses).map(esc).join(", ")}</summary>${pretty(responses)}</details>`,
        op["x-websocket"]
          ? `<details><summary>WebSocket</summary>${pretty(op["x-websocket"])}</details>`
          : "",
        "</section>",
      ];
      byTag.set(tag, [...(byTag.get(tag) ?? []), parts.join("")]);
    }
  }
  const tags = [...byTag.keys()].sort();
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(info.title)} ${esc(info.version)}</title><link rel="icon" href="data:,">
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;color:#1b1f24}
code,pre{font:13px ui-monospace,monospace}pre{background:#f4f5f7;padding:.5rem;overflow-x:auto}
h3{font-size:1rem;margin:1.2rem 0 .2rem;word-break:break-all}.m{padding:0 .3rem;border-radius:3px;background:#e3e8ee}
.get{background:#dcefff}.post{background:#e0f5e3}.delete{background:#fde2e1}
.tag{font-size:.75rem;border:1px solid #aab;border-radius:3px;padding:0 .3rem}nav a{margin-right:.6rem}
</style></head><body><main>
<h1>${esc(info.title)} <small>${esc(info.version)}</small></h1>
<p>${esc(info.description)}</p>
<p>The machine-readable document: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.1).
Authenticate with <code>Authorization: Bearer &lt;token&gt;</code>. Errors: ${esc(
    JSON.stringify({ error: { code: "…", message: "…", requestId: "…" } }),
  )}</p>
<nav>${tags.map((t) => `<a href="#tag-${esc(t)}">${esc(t)}</a>`).join("")}</nav>
${tags.map((t) => `<h2 id="tag-${esc(t)}">${esc(t)}</h2>${byTag.get(t)!.join("\n")}`).join("\n")}
</main></body></html>`;
}

/** Public routes; the document is built on first request, once every route is registered. */
export function openApiRoutes(router: ApiRouter, options: () => DocumentOptions): void {
  let cached: Json | undefined;
  const document = () => {
    cached ??= buildOpenApiDocument(options());
    return cached;
  };

  router.get(
    "/api/v1/openapi.json",
    doc({
      summary: "This API's OpenAPI 3.1 document",
      tag: "meta",
      responses: { 200: z.looseObject({ openapi: z.string(), paths: z.record(z.string(), z.unknown()) }) },
    }),
    (ctx) => {
      ctx.set("Cache-Control", "no-cache");
      ctx.body = document();
    },
  );

  router.get(
    "/api/v1/docs",
    doc({
      summary: "The API reference as a page (no script, works offline)",
      tag: "meta",
      responses: { 200: "text/html" },
    }),
    (ctx) => {
      ctx.type = "html";
      ctx.set("Cache-Control", "no-cache");
      ctx.body = renderDocsPage(document());
    },
  );
}
