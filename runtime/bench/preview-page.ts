/**
 * `npm run bench -- preview-page`: what a user waits for. A generated Vite-style page (index.html and
 * 300 small ES modules importing each other in a tree, fan-out 3, so the browser discovers them level by
 * level) served by a stand-in dev server on loopback, loaded in Chromium straight from the dev server,
 * through the host form of the preview proxy, through a bare Node TCP pipe (the floor for a proxy written
 * in Node) and through nginx, timed to the `load` event with an empty cache. Chromium opens at most 6
 * HTTP/1.1 connections per host, the same for all. Rounds alternate the ways in, each round starting at
 * the next one, so a noisy moment on a shared machine hits each of them alike; the median of 21 rounds
 * keeps the section near four minutes. The TTFB column (Resource Timing, request sent to first response
 * byte) is the per-request latency the proxy adds, plus what the browser spends on the request itself
 * (more with a cookie: the "nginx, same cookie" row).
 * Chromium runs on cores of its own, the servers on the first core (separateCores), as a user's browser
 * runs on the user's machine: sharing the cores, the browser's parsing and compiling delayed whichever
 * server process it preempted, and the figures measured that more than the servers. Each load gets a new
 * browser context, whose cache starts empty. Playwright drives it from this process, which stays on the
 * servers' core: it enables the Network domain and handles events for every request, 115–200 ms of CPU
 * per load here, the same for every way in.
 */
import { type ChildProcess, execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser } from "playwright-core";
import { commandRuns } from "../../box/testing/command-runs.ts";
import { CHROMIUM, HAVE_CHROMIUM, launchChromium } from "../test/browser.ts";
import {
  type BenchPostgres,
  fmt,
  inRotatingOrder,
  median,
  roundByRound,
  startNginxProxy,
  table,
} from "./harness.ts";
import { spawnPortPrinter, startBenchPreview } from "./preview.ts";
import { spawnTcpPipe } from "./tcp-pipe.ts";

const MODULES = 300;
const FAN_OUT = 3;
/** About what a small Vite-transformed component weighs. */
const FILLER = "x".repeat(1500);

/** index.html + `src/m0.js` … `src/m<count-1>.js`; module i imports modules FAN_OUT·i+1 … FAN_OUT·i+FAN_OUT. */
export function generateModulePage(dir: string, count = MODULES): void {
  mkdirSync(join(dir, "src"), { recursive: true });
  writeFileSync(
    join(dir, "index.html"),
    `<!doctype html><html><head><meta charset="utf-8"><title>bench</title>
<script type="module" src="/src/m0.js"></script></head><body><div id="app"></div></body></html>\n`,
  );
  for (let i = 0; i < count; i++) {
    const children = Array.from({ length: FAN_OUT }, (_, k) => FAN_OUT * i + k + 1).filter((c) => c < count);
    const imports = children.map((c) => `import { v as v${c} } from "./m${c}.js";`).join("\n");
    const sum = ["0", ...children.map((c) => `v${c}`)].join(" + ");
    writeFileSync(
      join(dir, "src", `m${i}.js`),
      `${imports}
export const filler = "${FILLER}";
export const v = ${sum} + 1;
globalThis.__modules = (globalThis.__modules ?? 0) + 1;
`,
    );
  }
}

function spawnStaticDevServer(dir: string): Promise<{ port: number; child: ChildProcess }> {
  const module = fileURLToPath(new URL("./static-dev-server.ts", import.meta.url));
  return spawnPortPrinter("static dev server", [module, dir]);
}

interface Target {
  via: "direct" | "host form" | "host form, DNS" | "bare Node TCP pipe" | "nginx" | "nginx, same cookie";
  url: string;
  cookie?: { name: string; value: string; url: string };
  /** The browser that loads it: Chromium as it comes, or one that resolves *.localhost like a DNS name. */
  mapped?: boolean;
}

/** One cold load's figures, as the browser measured them. */
interface Load {
  /** ms from navigation start to `load`. */
  ms: number;
  /** Mean ms from sending a module's request to its response's first byte: the proxy's share per request. */
  ttfbMs: number;
}

/** One cold load (a new context: empty cache) to `load`. */
async function loadOnce(browsers: { plain: Browser; mapped: Browser }, t: Target): Promise<Load> {
  const context = await (t.mapped ? browsers.mapped : browsers.plain).newContext();
  try {
    if (t.cookie) await context.addCookies([t.cookie]);
    // A new context's cache is empty: every module is fetched, as with the cache disabled.
    const page = await context.newPage();
    await page.goto(t.url, { waitUntil: "load" });
    const { ms, ttfbMs, modules } = await page.evaluate(() => {
      const nav = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming;
      const resources = performance.getEntriesByType("resource") as PerformanceResourceTiming[];
      const waits = resources.map((r) => r.responseStart - r.requestStart);
      return {
        ms: nav.loadEventStart,
        ttfbMs: waits.reduce((a, b) => a + b, 0) / Math.max(1, waits.length),
        modules: (globalThis as { __modules?: number }).__modules ?? 0,
      };
    });
    if (modules !== MODULES) throw new Error(`${t.via}: ${modules} of ${MODULES} modules ran`);
    return { ms, ttfbMs };
  } finally {
    await context.close();
  }
}

/**
 * Pins this process (and so the servers it starts from now on) to the first core and returns a Chromium
 * wrapper that runs the browser on the others; `restore` undoes the pin. Null (nothing pinned) on one core
 * or without util-linux's `taskset`.
 */
function separateCores(dir: string): { chromium: string; restore(): void } | null {
  const cores = availableParallelism();
  if (cores < 2 || !commandRuns("taskset", ["-V"])) return null;
  const pin = (list: string) =>
    execFileSync("taskset", ["-a", "-p", "-c", list, String(process.pid)], { stdio: "ignore" });
  const chromium = join(dir, "chromium-on-its-own-cores");
  writeFileSync(chromium, `#!/bin/sh\nexec taskset -c 1-${cores - 1} ${JSON.stringify(CHROMIUM)} "$@"\n`);
  chmodSync(chromium, 0o755);
  pin("0");
  return { chromium, restore: () => pin(`0-${cores - 1}`) };
}

export async function benchPreviewPage(pgs: BenchPostgres, rounds = 21): Promise<void> {
  if (!HAVE_CHROMIUM) {
    console.log("\nPreview page load: skipped (no Chromium at /usr/bin/chromium or BERTH_CHROMIUM)");
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "berth-bench-page-"));
  generateModulePage(dir);
  const cores = separateCores(dir);
  const dev = await spawnStaticDevServer(dir);
  const nginx = await startNginxProxy(dev.port);
  const pipe = await spawnTcpPipe(dev.port);
  let preview: Awaited<ReturnType<typeof startBenchPreview>> | undefined;
  let browsers: { plain: Browser; mapped: Browser } | undefined;
  try {
    preview = await startBenchPreview(await pgs.database("preview_page"), dev.port);
    const [name, value] = preview.cookie.split(/=(.*)/s) as [string, string];
    // Chromium resolves *.localhost to loopback itself, so the host form is reached by its real name.
    const hostUrl = `http://${preview.hostHeader}/`;
    const targets: Target[] = [
      { via: "direct", url: `http://127.0.0.1:${dev.port}/` },
      { via: "host form", url: hostUrl, cookie: { name, value, url: hostUrl } },
      // A hosted preview domain resolves through DNS to one address; Chromium's own handling of *.localhost
      // (local mode's preview names) costs more per connection. This row maps the name to 127.0.0.1 the way
      // DNS would, so it measures the proxy alone.
      { via: "host form, DNS", url: hostUrl, cookie: { name, value, url: hostUrl }, mapped: true },
    ];
    // The floor for any proxy written in Node: one more Node process hop, parsing and checking nothing.
    targets.push({ via: "bare Node TCP pipe", url: `http://127.0.0.1:${pipe.ready.port}/` });
    if (nginx) {
      const nginxUrl = `http://127.0.0.1:${nginx.port}/`;
      targets.push({ via: "nginx", url: nginxUrl });
      // nginx with the host form's cookie in the browser (nginx ignores it): Chromium spends more on a
      // request that carries a cookie (1.05x plain nginx's time in a run on a 2-core machine), so this row
      // tells the proxy's share of the host form's time from the credential's.
      targets.push({ via: "nginx, same cookie", url: nginxUrl, cookie: { name, value, url: nginxUrl } });
    }
    browsers = {
      plain: await launchChromium([], cores?.chromium),
      mapped: await launchChromium(
        [`--host-resolver-rules=MAP ${preview.hostHeader.split(":")[0]} 127.0.0.1`],
        cores?.chromium,
      ),
    };
    for (const t of targets) await loadOnce(browsers, t); // warm-up: JIT, pools, the route cache
    const loads = new Map<string, Load[]>(targets.map((t) => [t.via, []]));
    for (const t of inRotatingOrder(targets, rounds)) loads.get(t.via)!.push(await loadOnce(browsers, t));
    const times = new Map([...loads].map(([via, ls]) => [via, ls.map((l) => l.ms)]));
    const nginxMs = nginx ? median(times.get("nginx")!) : undefined;
    const directMs = median(times.get("direct")!);
    table(
      `Preview page load: index.html + ${MODULES} ES modules (tree, fan-out ${FAN_OUT}), Chromium on ${cores ? "cores of its own" : "the same cores"}, empty cache, median of ${rounds} rounds in rotating order (ms to load; TTFB: request sent to first response byte, mean per request, median over rounds)`,
      ["via", "median ms", "min ms", "max ms", "÷ direct", "÷ nginx", "TTFB ms"],
      targets.map((t) => {
        const xs = times.get(t.via)!;
        const m = median(xs);
        return [
          t.via,
          fmt(m),
          fmt(Math.min(...xs)),
          fmt(Math.max(...xs)),
          fmt(m / directMs, 2),
          nginxMs ? fmt(m / nginxMs, 2) : "-",
          fmt(median(loads.get(t.via)!.map((l) => l.ttfbMs)), 2),
        ];
      }),
    );
    if (nginx) {
      // Load times swing by more than the ways in differ (see min and max); the ways of one round ran back
      // to back, so the ratio round by round is steadier than the ratio of two medians.
      const perRound = (via: Target["via"], base: Target["via"] = "nginx") =>
        roundByRound(loads.get(via)!.map((l, i) => l.ms / loads.get(base)![i]!.ms));
      console.log(
        `  ÷ nginx round by round: host form ${perRound("host form")}; host form, DNS ${perRound("host form, DNS")}; bare Node TCP pipe ${perRound("bare Node TCP pipe")}; direct ${perRound("direct")}; nginx, same cookie ${perRound("nginx, same cookie")}`,
      );
      console.log(
        `  host form ÷ nginx with the same cookie, round by round: ${perRound("host form", "nginx, same cookie")}`,
      );
    }
    if (!nginx) console.log("  (nginx not on PATH: no nginx baseline; Debian package `nginx`)");
  } finally {
    await browsers?.plain.close();
    await browsers?.mapped.close();
    await preview?.stop();
    nginx?.stop();
    await pipe.stop();
    dev.child.kill();
    cores?.restore();
    rmSync(dir, { recursive: true, force: true });
  }
}
