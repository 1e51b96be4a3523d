/**
 * `npm start` builds the web client when the build is missing or older than its sources, so a fresh clone
 * and a `git pull` both serve the current client without a separate build step.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "../platform/logger.ts";

const WEB_ROOT = fileURLToPath(new URL("../web", import.meta.url));

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(st.mtimeMs, ...readdirSync(path).map((name) => newestMtime(join(path, name))));
}

export function webBuildIsStale(root = WEB_ROOT): boolean {
  const built = join(root, "dist", "index.html");
  if (!existsSync(built)) return true;
  const sources = ["index.html", "vite.config.ts", "src", "public"]
    .map((p) => join(root, p))
    .filter(existsSync);
  return Math.max(...sources.map(newestMtime)) > statSync(built).mtimeMs;
}

export async function ensureWebBuild(log: Logger, root = WEB_ROOT): Promise<void> {
  if (!webBuildIsStale(root)) return;
  log.info("building the web client");
  const started = performance.now();
  const { build } = await import("vite");
  await build({ configFile: join(root, "vite.config.ts"), logLevel: "warn" });
  log.info({ ms: Math.round(performance.now() - started) }, "web client built");
}
