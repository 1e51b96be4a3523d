/**
 * The service worker's notification click (public/sw.js), run against stand-ins for the worker's globals:
 * a real click cannot be made on a system notification from a test (Chromium's DevTools protocol can
 * deliver a push, not click what it shows; runtime/e2e/push.test.ts covers delivery).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const SOURCE = readFileSync(new URL("./public/sw.js", import.meta.url), "utf8");
const ORIGIN = "https://berth.example";

/** `uncontrolled`: a window this worker does not control, whose navigate() rejects as browsers do. */
function worker(windows: Array<{ url: string; uncontrolled?: boolean }>) {
  const handlers = new Map<string, (event: unknown) => void>();
  const calls: string[] = [];
  const clients = {
    matchAll: async () =>
      windows.map((w) => ({
        url: w.url,
        focus: async () => calls.push(`focus ${w.url}`),
        navigate: async (to: string) => {
          if (w.uncontrolled)
            throw new TypeError("This service worker is not the client's active service worker.");
          calls.push(`navigate ${to}`);
        },
        postMessage: (m: { type: string; url: string }) => calls.push(`message ${m.type} ${m.url}`),
      })),
    openWindow: async (to: string) => calls.push(`open ${to}`),
    claim: async () => {},
  };
  const self = {
    location: { origin: ORIGIN },
    clients,
    registration: { showNotification: async () => {} },
    addEventListener: (type: string, handler: (event: unknown) => void) => handlers.set(type, handler),
    skipWaiting: () => {},
  };
  new Function("self", SOURCE)(self);
  const click = async (url: string) => {
    let done: Promise<unknown> = Promise.resolve();
    handlers.get("notificationclick")!({
      notification: { data: { url }, close: () => calls.push("close") },
      waitUntil: (p: Promise<unknown>) => {
        done = p;
      },
    });
    await done;
    return calls;
  };
  return { click };
}

describe("service worker notification click", () => {
  it("opens the session's terminal in a new window when no Berth window is open", async () => {
    expect(await worker([]).click("/#/t/abc")).toEqual(["close", `open ${ORIGIN}/#/t/abc`]);
  });

  it("focuses an open Berth window and takes it to the session", async () => {
    const calls = await worker([{ url: "https://elsewhere.example/" }, { url: `${ORIGIN}/#/` }]).click(
      "/#/t/abc",
    );
    expect(calls).toEqual(["close", `focus ${ORIGIN}/#/`, `navigate ${ORIGIN}/#/t/abc`]);
  });

  it("asks a window it does not control to go to the session itself", async () => {
    const calls = await worker([{ url: `${ORIGIN}/#/`, uncontrolled: true }]).click("/#/t/abc");
    expect(calls).toEqual(["close", `focus ${ORIGIN}/#/`, `message open ${ORIGIN}/#/t/abc`]);
  });

  it("never opens another origin, whatever the notification says", async () => {
    expect(await worker([]).click("https://evil.example/phish")).toEqual(["close", `open ${ORIGIN}/`]);
  });
});
