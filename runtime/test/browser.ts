/**
 * Debian's Chromium for the browser tests, driven by playwright-core (no browser download): where it is,
 * whether it is there, how it is launched (the env notes' flags), and where screenshots go.
 */
import { existsSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type Browser, chromium } from "playwright-core";

export const CHROMIUM = process.env.BERTH_CHROMIUM ?? "/usr/bin/chromium";
export const HAVE_CHROMIUM = existsSync(CHROMIUM);
/** Screenshots land here on every run (`test-results/` at the repository root). */
export const RESULTS = fileURLToPath(new URL("../../test-results/", import.meta.url));

/** `extraArgs`: e.g. the fake microphone flags of the voice test. */
export async function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  mkdirSync(RESULTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...extraArgs,
    ],
  });
}
