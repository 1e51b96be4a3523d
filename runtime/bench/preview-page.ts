/**
 * `npm run bench -- preview-page`: what a user waits for. A generated Vite-style page (index.html and
 * 300 small ES modules importing each other in a tree, fan-out 3, so the browser discovers them level by
 * level) served by a stand-in dev server on loopback, loaded in Chromium straight from the dev server,
 * through the host form of the preview proxy, through its byte relay with no checks (in the control
 * plane's process), through a bare Node TCP pipe (the floor for a proxy written in Node) and through
 * nginx, timed to the `load` event with an empty cache. Chromium opens at most 6
 * HTTP/1.1 connections per host, the same for all. Rounds alternate the ways in, each round starting at
 * the next one, so a noisy moment on a shared machine hits each of them alike. The TTFB column (Resource
 * Timing, request sent to first response byte) is the per-request latency the proxy adds, plus what the
 * browser spends on the request itself (more with a cookie: the "nginx, same cookie" row).
 *
 * Nothing drives the browser while it loads (PageLoader): each load is a new headless Chromium process
 * with a new profile (an empty cache), started at a launcher page that then navigates to the page, which
 * reports its own navigation timing to the bench with a beacon after `load`. A DevTools client, as
 * playwright is, has the browser report every request to it: that cost 115–200 ms of the bench process's
 * CPU per load and added 4–7 ms to every request's time to first byte, much the same for every way in,
 * so it hid how the ways differ. Every way in is reached by the preview's host name, and the launcher is
 * served from that name too (PageLoader.load): the browser keeps one renderer process from the launcher
 * to the page for all of them alike.
 * Chromium runs on cores of its own, the servers on the first core (separateCores), as a user's browser
 * runs on the user's machine: sharing the cores, the browser's parsing and compiling delayed whichever
 * server process it preempted, and the figures measured that more than the servers.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { commandRuns } from "../../box/testing/command-runs.ts";
import { CHROMIUM, CHROMIUM_FLAGS, HAVE_CHROMIUM } from "../test/browser.ts";
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

/**
 * index.html + `src/m0.js` … `src/m<count-1>.js`; module i imports modules FAN_OUT·i+1 … FAN_OUT·i+FAN_OUT.
 * After `load`, the page sends its figures (a `Load` as JSON) with a beacon to port `reportPort` of its own
 * host name (the PageLoader's, which serves every page's launcher from that name).
 */
export function generateModulePage(dir: string, reportPort: number, count = MODULES): void {
  mkdirSync(join(dir, "src"), { recursive: true });
  // From the final document's fetch (after the host form's sign-in redirect) to `load`.
  const report = `addEventListener("load", () => setTimeout(() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const waits = performance.getEntriesByType("resource").map((r) => r.responseStart - r.requestStart);
  navigator.sendBeacon("http://" + location.hostname + ":${reportPort}/report", JSON.stringify({
    ms: nav.loadEventStart - nav.fetchStart,
    ttfbMs: waits.reduce((a, b) => a + b, 0) / Math.max(1, waits.length),
    modules: globalThis.__modules ?? 0,
  }));
}));`;
  writeFileSync(
    join(dir, "index.html"),
    `<!doctype html><html><head><meta charset="utf-8"><title>bench</title>
<script>${report}</script>
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
  via:
    | "direct"
    | "host form"
    | "bare relay in the control plane"
    | "bare Node TCP pipe"
    | "nginx"
    | "nginx, same cookie";
  /**
   * Where the browser goes: the page, or a sign-in that sets a cookie and redirects to it. Every way in is
   * reached by the same host name (the preview's), on its own port.
   */
  url: () => Promise<string>;
}

/** One cold load's figures, as the page measured them. */
interface Load {
  /** ms from the page's fetch to `load`. */
  ms: number;
  /** Mean ms from sending a module's request to its response's first byte: the proxy's share per request. */
  ttfbMs: number;
  modules: number;
}

/**
 * Cold page loads in Chromium with nothing attached to the browser: a loopback server that serves the
 * launcher page (`/go?to=<url>`: once the new browser is idle, it navigates to the page) and receives the
 * page's beacon. One load at a time.
 */
class PageLoader {
  readonly #server: Server;
  readonly #chromium: string;
  #pending: ((load: Load) => void) | null = null;

  private constructor(server: Server, chromium: string) {
    this.#server = server;
    this.#chromium = chromium;
  }

  /** `chromium`: the executable (or a wrapper that starts it on cores of its own). */
  static async start(chromium: string): Promise<PageLoader> {
    const server = createServer((req, res) => {
      if (req.method === "GET" && req.url?.startsWith("/go?")) {
        const to = new URL(req.url, "http://launcher").searchParams.get("to") ?? "";
        res.setHeader("content-type", "text/html; charset=utf-8");
        res.end(
          `<!doctype html><script>addEventListener("load", () => requestIdleCallback(() => { location.href = ${JSON.stringify(to)}; }));</script>`,
        );
        return;
      }
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => {
        body += chunk;
      });
      req.on("end", () => {
        res.end();
        if (req.method === "POST") loader.#pending?.(JSON.parse(body) as Load);
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const loader = new PageLoader(server, chromium);
    return loader;
  }

  /** The launcher's port, and the one the page sends its figures to (on its own host name). */
  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /**
   * One cold load: a new browser and profile, the launcher, then the page; the page's own figures. The
   * launcher is served from the page's own host name, so the navigation stays on one site: Chromium keeps
   * the launcher's renderer process for the page. A navigation to another site starts a new one, which
   * costs about 100 ms of the browser's core before the page's first module is even asked for (on one
   * machine, with the launcher on 127.0.0.1: 1.29x nginx for the host form alone, then the only way on
   * another site; 1.03-1.07x with the launcher on a third site, where every way paid for a new process).
   * The name resolves to 127.0.0.1 by a resolver rule, as DNS answers for a hosted preview domain,
   * rather than by Chromium's own handling of *.localhost names.
   */
  async load(t: Target): Promise<Load> {
    const profile = mkdtempSync(join(tmpdir(), "berth-bench-chromium-"));
    const url = await t.url();
    const { hostname } = new URL(url);
    const launcher = `http://${hostname}:${this.port}/go?to=${encodeURIComponent(url)}`;
    const reported = new Promise<Load>((resolve) => {
      this.#pending = resolve;
    });
    // Its own process group, so that the browser and every process it started are stopped together.
    const browser = spawn(
      this.#chromium,
      [
        "--headless",
        ...CHROMIUM_FLAGS,
        `--host-resolver-rules=MAP ${hostname} 127.0.0.1`,
        `--user-data-dir=${profile}`,
        launcher,
      ],
      { detached: true, stdio: "ignore" },
    );
    const exited = once(browser, "exit");
    let timer: NodeJS.Timeout | undefined;
    try {
      const load = await Promise.race([
        reported,
        exited.then(() => Promise.reject(new Error(`${t.via}: Chromium exited before the page reported`))),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${t.via}: no report within 60 s`)), 60_000);
        }),
      ]);
      if (load.modules !== MODULES) throw new Error(`${t.via}: ${load.modules} of ${MODULES} modules ran`);
      return load;
    } finally {
      clearTimeout(timer);
      this.#pending = null;
      if (browser.exitCode === null && browser.signalCode === null) {
        process.kill(-browser.pid!, "SIGKILL");
        await exited;
      }
      rmSync(profile, { recursive: true, force: true });
    }
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => this.#server.close(resolve));
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

export async function benchPreviewPage(pgs: BenchPostgres, rounds = 15): Promise<void> {
  if (!HAVE_CHROMIUM) {
    console.log("\nPreview page load: skipped (no Chromium at /usr/bin/chromium or BERTH_CHROMIUM)");
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "berth-bench-page-"));
  const cores = separateCores(dir);
  const loader = await PageLoader.start(cores?.chromium ?? CHROMIUM);
  generateModulePage(dir, loader.port);
  const dev = await spawnStaticDevServer(dir);
  const pipe = await spawnTcpPipe(dev.port);
  let preview: Awaited<ReturnType<typeof startBenchPreview>> | undefined;
  let nginx: Awaited<ReturnType<typeof startNginxProxy>> = null;
  try {
    preview = await startBenchPreview(await pgs.database("preview_page"), dev.port);
    const signIn = preview.signInUrl;
    // nginx with the host form's cookie in the browser (it ignores it), set by a sign-in redirect as the
    // host form's is: Chromium spends more on a request that carries a cookie, so this row tells the
    // proxy's share of the host form's time from the credential's.
    nginx = await startNginxProxy(dev.port, { loginCookie: preview.cookie });
    // The host form needs its preview's name; the other ways answer any name, so every way is reached by
    // that one, each on its port: the browser treats them alike (one site, one way of resolving).
    const name = new URL(`http://${preview.hostHeader}`).hostname;
    const page =
      (port: number, path = "/") =>
      async () =>
        `http://${name}:${port}${path}`;
    const targets: Target[] = [
      { via: "direct", url: page(dev.port) },
      // Each load through a new one-time sign-in, as the UI opens a preview.
      { via: "host form", url: signIn },
      // The host form's byte relay with no checks and no rewriting, in the control plane's process: the
      // relay's share of the host form's time, apart from the gateway's.
      { via: "bare relay in the control plane", url: page(await preview.ask(`bareRelayTo:${dev.port}`)) },
      // The floor for any proxy written in Node: one more Node process hop, parsing and checking nothing.
      { via: "bare Node TCP pipe", url: page(pipe.ready.port) },
    ];
    if (nginx) {
      targets.push({ via: "nginx", url: page(nginx.port) });
      targets.push({ via: "nginx, same cookie", url: page(nginx.port, "/__login") });
    }
    for (const t of targets) await loader.load(t); // warm-up: JIT, pools, the route cache
    const loads = new Map<string, Load[]>(targets.map((t) => [t.via, []]));
    for (const t of inRotatingOrder(targets, rounds)) loads.get(t.via)!.push(await loader.load(t));
    const times = new Map([...loads].map(([via, ls]) => [via, ls.map((l) => l.ms)]));
    const nginxMs = nginx ? median(times.get("nginx")!) : undefined;
    const directMs = median(times.get("direct")!);
    table(
      `Preview page load: index.html + ${MODULES} ES modules (tree, fan-out ${FAN_OUT}), a new headless Chromium per load (nothing attached) on ${cores ? "cores of its own" : "the same cores"}, empty cache, median of ${rounds} rounds in rotating order (ms from the page's fetch to load; TTFB: request sent to first response byte, mean per request, median over rounds)`,
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
        `  ÷ nginx round by round: host form ${perRound("host form")}; bare relay in the control plane ${perRound("bare relay in the control plane")}; bare Node TCP pipe ${perRound("bare Node TCP pipe")}; direct ${perRound("direct")}; nginx, same cookie ${perRound("nginx, same cookie")}`,
      );
      console.log(
        `  host form ÷ nginx with the same cookie, round by round: ${perRound("host form", "nginx, same cookie")}`,
      );
    }
    if (!nginx) console.log("  (nginx not on PATH: no nginx baseline; Debian package `nginx`)");
  } finally {
    await preview?.stop();
    nginx?.stop();
    await pipe.stop();
    dev.child.kill();
    await loader.stop();
    cores?.restore();
    rmSync(dir, { recursive: true, force: true });
  }
}
