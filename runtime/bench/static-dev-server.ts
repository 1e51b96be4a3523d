/**
 * A stand-in for a Vite dev server in `npm run bench`'s page-load section: serves a directory's files from
 * memory (Vite answers modules from its transform cache) with `Cache-Control: no-cache` and an ETag, as
 * Vite does. Run as its own process, `node static-dev-server.ts <dir>`; prints its port on stdout.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, relative } from "node:path";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

interface File {
  body: Buffer;
  type: string;
  etag: string;
}

function load(root: string): Map<string, File> {
  const files = new Map<string, File>();
  for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = join(entry.parentPath, entry.name);
    const body = readFileSync(full);
    const etag = `W/"${createHash("sha1").update(body).digest("base64url")}"`;
    files.set(`/${relative(root, full)}`, {
      body,
      type: TYPES[extname(full)] ?? "application/octet-stream",
      etag,
    });
  }
  return files;
}

export async function startStaticDevServer(root: string): Promise<{ port: number; close(): void }> {
  const files = load(root);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0]!;
    const file = files.get(path === "/" ? "/index.html" : path);
    if (!file) {
      res.writeHead(404, { "content-type": "text/plain" });
      return res.end("not found");
    }
    res.writeHead(200, {
      "content-type": file.type,
      "content-length": file.body.length,
      "cache-control": "no-cache",
      etag: file.etag,
    });
    res.end(file.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}

if (import.meta.main) {
  const s = await startStaticDevServer(process.argv[2]!);
  console.log(s.port);
}
