/**
 * Debian's Chromium for the browser tests, driven by playwright-core (no browser download): where it is,
 * whether it is there, how it is launched (the env notes' flags), where screenshots go, and axe-core's
 * accessibility check of a page.
 */
import { existsSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";

const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

export const CHROMIUM = process.env.BERTH_CHROMIUM ?? "/usr/bin/chromium";
export const HAVE_CHROMIUM = existsSync(CHROMIUM);
/** Screenshots land here on every run (`test-results/` at the repository root). */
export const RESULTS = fileURLToPath(new URL("../../test-results/", import.meta.url));

/** Chromium's flags here: no sandbox (root in a container), no GPU, nothing that calls the internet. */
export const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** `extraArgs`: e.g. the fake microphone flags of the voice test. */
export async function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  mkdirSync(RESULTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_FLAGS, ...extraArgs],
  });
}

/**
 * axe-core's serious and critical violations on the page as it is now, one line each (`where: id (impact)
 * at selectors`). axe is injected as an inline script, which the control plane's CSP rightly forbids: the
 * page's context needs `bypassCSP`.
 */
export async function accessibilityProblems(p: Page, where: string): Promise<string[]> {
  await p.addScriptTag({ path: AXE });
  const found = await p.evaluate(async () => {
    type Violation = { id: string; impact: string | null; nodes: Array<{ target: string[] }> };
    const axe = (window as unknown as { axe: { run(): Promise<{ violations: Violation[] }> } }).axe;
    return (await axe.run()).violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  });
  return found.map(
    (v) => `${where}: ${v.id} (${v.impact}) at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`,
  );
}
