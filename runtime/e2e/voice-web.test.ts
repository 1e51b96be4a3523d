/**
 * The web client's microphone in Chromium, with a fake microphone fed from a spoken WAV (espeak-ng; a tone
 * without it) and the fake Deepgram on loopback (runtime/test/fake-deepgram.ts), against a real control
 * plane in local mode with a real box agent and tmux:
 * - tap to toggle with "Enter" ticked: audio bytes reach the fake Deepgram over the browser's own socket
 *   (`['bearer', token]`), the interim text shows in the editable line, and the final transcript
 *   (`speech_final`) is run in the Claude pane (read back with capture-pane); tapping again sends
 *   CloseStream;
 * - hold to talk without Enter: the interim words show, releasing flushes them (CloseStream → the final)
 *   and they are typed on the prompt, not run;
 * - voice off: the button explains how to turn it on (on a 360-px phone, nothing wider than the screen).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureWebBuild } from "../app/web-build.ts";
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { createLogger } from "../platform/logger.ts";
import { sessions } from "../store/schema.ts";
import { HAVE_CHROMIUM, launchChromium, RESULTS } from "../test/browser.ts";
import { startTestControlPlane } from "../test/control-plane.ts";
import { startFakeDeepgram } from "../test/fake-deepgram.ts";
import { insertWorkspace } from "../test/fixtures.ts";
import { createReadyWorkspace, startLocalControlPlane } from "../test/local-control-plane.ts";
import { waitFor } from "../test/wait.ts";
import { speechWav, tonePcm, wavOf } from "../test/wav.ts";

describe.skipIf(!HAVE_CHROMIUM)("voice input in the web client (Chromium, fake microphone)", async () => {
  if (!HAVE_CHROMIUM) return;
  await ensureWebBuild(createLogger("silent"));
  const dir = mkdtempSync(join(tmpdir(), "berth-voice-web-"));
  const wavPath = join(dir, "speech.wav");
  if (!speechWav("list the files in this directory", wavPath)) writeFileSync(wavPath, wavOf(tonePcm(3)));

  const deepgram = await startFakeDeepgram({ transcript: "echo voice-web-9", bytesPerUtterance: 48_000 });
  afterAll(() => deepgram.close());
  const cp = await startLocalControlPlane({
    DEEPGRAM_API_KEY: deepgram.apiKey,
    BERTH_DEEPGRAM_URL: deepgram.url,
  });
  const workspaceId = await createReadyWorkspace(cp, "voice-web");
  const res = await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, {
    method: "POST",
    token: cp.localToken,
    json: { name: "talk" },
  });
  const sessionId: string = ((await res.json()) as { session: { id: string } }).session.id;
  const tmux = (...args: string[]) =>
    execFileSync("tmux", ["-S", cp.agentState(workspaceId)!.tmuxSocket, ...args], { encoding: "utf8" });
  const claudePane = await waitFor(
    "the Claude pane",
    () =>
      tmux("list-panes", "-s", "-t", "=talk", "-F", "#{@berth-role} #{pane_id}")
        .split("\n")
        .find((l) => l.startsWith("claude "))
        ?.split(" ")[1],
  );
  const screen = () => tmux("capture-pane", "-p", "-J", "-t", claudePane);

  let browser: Browser;
  let page: Page;
  beforeAll(async () => {
    browser = await launchChromium([
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
      `--use-file-for-fake-audio-capture=${wavPath}`,
      "--autoplay-policy=no-user-gesture-required",
    ]);
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: false });
    await ctx.grantPermissions(["microphone"], { origin: cp.url });
    page = await ctx.newPage();
    await page.goto(cp.loginUrl!);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    await page.goto(`${cp.url}/#/t/${sessionId}`);
    await page.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("tap to toggle with Enter: interim text shows, the final transcript runs in the Claude pane", {
    timeout: 90_000,
  }, async () => {
    await page.getByLabel("Enter", { exact: true }).check();
    const mic = page.getByRole("button", { name: /Talk/ });
    await mic.click();
    const draft = page.getByLabel("What you said");
    await waitFor("interim text in the line", async () => (await draft.inputValue()).startsWith("echo"));
    await waitFor(
      "the transcript run in the pane",
      () => screen().split("\n").includes("voice-web-9"),
      30_000,
    );
    const stream = deepgram.streams.at(-1)!;
    expect(stream.auth).toBe("bearer");
    expect(stream.bytes).toBeGreaterThan(0);
    expect(Object.fromEntries(stream.params)).toMatchObject({ encoding: "linear16", sample_rate: "16000" });
    await page.screenshot({ path: `${RESULTS}voice-phone.png` });
    await page.getByRole("button", { name: "Stop listening" }).click();
    await waitFor("CloseStream at the fake", () => stream.closeStreams === 1 && stream.closed);
    // The browser reported the stream's seconds with its ticket.
    await waitFor("the direct stream's seconds in voice_usage", async () => {
      const { rows } = await cp.deps.database.pool.query("SELECT seconds FROM voice_usage");
      return rows.length === 1 && rows[0].seconds > 0;
    });
  });

  it("hold to talk without Enter: releasing types what was heard on the prompt, not run", {
    timeout: 90_000,
  }, async () => {
    tmux("send-keys", "-t", claudePane, "C-u");
    deepgram.script.transcript = "echo voice-hold-3";
    deepgram.script.holdFinal = true; // no speech_final while held: the release must send
    await page.getByLabel("Enter", { exact: true }).uncheck();
    const before = deepgram.streams.length;
    const mic = page.getByRole("button", { name: /Talk/ });
    const box = (await mic.boundingBox())!;
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    const draft = page.getByLabel("What you said");
    await waitFor(
      "both words in the line",
      async () => (await draft.inputValue()) === "echo voice-hold-3",
      30_000,
    );
    await page.mouse.up();
    await waitFor("the text on the prompt", () => screen().includes("echo voice-hold-3"), 30_000).catch(
      async (err) => {
        const stream = deepgram.streams[before]!;
        throw new Error(
          `${err}: status ${await page.locator(".voice-message").textContent()}, line ${await draft.inputValue()}, fake ${JSON.stringify({ ...stream, params: undefined })}, streams ${deepgram.streams.length - before}`,
        );
      },
    );
    const stream = deepgram.streams[before]!;
    await waitFor("CloseStream at the fake", () => stream.closeStreams === 1);
    expect(stream.finals).toBe(1);
    // Not run: no output line.
    expect(screen().split("\n")).not.toContain("voice-hold-3");
    tmux("send-keys", "-t", claudePane, "C-u");
  });

  it("leaving the terminal while the microphone starts leaves the microphone off", {
    timeout: 90_000,
  }, async () => {
    deepgram.script.holdFinal = false;
    // Every microphone stream the page is given, to see whether one is left capturing; while `hold` is
    // set, getUserMedia waits for it (as it does behind the browser's permission prompt).
    type Mics = { mics: MediaStream[]; hold: Promise<void> | null; asked: boolean; grant(): void };
    await page.evaluate(() => {
      const media = navigator.mediaDevices;
      const original = media.getUserMedia.bind(media);
      const w = window as unknown as Mics;
      w.mics = [];
      w.hold = null;
      media.getUserMedia = async (constraints) => {
        w.asked = true;
        await w.hold;
        const stream = await original(constraints);
        w.mics.push(stream);
        return stream;
      };
    });
    const liveTracks = () =>
      page.evaluate(
        () =>
          (window as unknown as Mics).mics
            .flatMap((s) => s.getTracks())
            .filter((t) => t.readyState === "live").length,
      );
    const leave = async () => {
      await page.evaluate((id) => {
        location.hash = `#/w/${id}`;
      }, workspaceId);
      await page.getByRole("heading", { name: "voice-web" }).waitFor();
    };
    /** Back on the terminal, one tap-to-toggle round as usual: the only stream the fake sees. */
    const talkOnce = async () => {
      const before = deepgram.streams.length;
      await page.evaluate((id) => {
        location.hash = `#/t/${id}`;
      }, sessionId);
      await page.getByRole("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
      await page.getByRole("button", { name: /Talk/ }).click();
      const stream = await waitFor(
        "audio at the fake",
        () => deepgram.streams.slice(before).find((s) => s.bytes > 0),
        30_000,
      );
      await page.getByRole("button", { name: "Stop listening" }).click();
      await waitFor("the stream closed", () => stream.closed);
      expect(deepgram.streams.length).toBe(before + 1);
      await expect.poll(liveTracks).toBe(0);
      tmux("send-keys", "-t", claudePane, "C-u");
    };

    // A tap on the mic, and the user is gone to the workspace page before the voice token arrives.
    let held: (() => Promise<void>) | null = null;
    const asked = new Promise<void>((resolve) => {
      void page.route("**/api/v1/voice/token", (route) => {
        held = () => route.continue();
        resolve();
      });
    });
    await page.getByRole("button", { name: /Talk/ }).click();
    await asked;
    await leave();
    const answered = page.waitForResponse("**/api/v1/voice/token");
    await held!();
    await answered;
    await page.unroute("**/api/v1/voice/token");
    await talkOnce();

    // Again, gone while the microphone is being asked for; it is granted after the page was left.
    await page.evaluate(() => {
      const w = window as unknown as Mics;
      w.asked = false;
      w.hold = new Promise((resolve) => {
        w.grant = resolve;
      });
    });
    await page.getByRole("button", { name: /Talk/ }).click();
    await waitFor("the microphone asked for", () => page.evaluate(() => (window as unknown as Mics).asked));
    await leave();
    const mics = await page.evaluate(() => (window as unknown as Mics).mics.length);
    await page.evaluate(() => {
      const w = window as unknown as Mics;
      w.hold = null;
      w.grant();
    });
    await waitFor("the microphone granted", () =>
      page.evaluate((n) => (window as unknown as Mics).mics.length > n, mics),
    );
    await talkOnce();
  });
});

describe.skipIf(!HAVE_CHROMIUM)("voice input turned off, in the web client", async () => {
  if (!HAVE_CHROMIUM) return;
  await ensureWebBuild(createLogger("silent"));
  const cp = await startTestControlPlane({}, { runBuilds: false });
  const { db } = cp.deps.database;
  const owner = await upsertUser(cp.deps.store, LOCAL_OWNER_EXTERNAL_ID);
  const ws = await insertWorkspace(db, owner.userId, { name: "quiet", state: "hibernated" });
  const [session] = await db
    .insert(sessions)
    .values({ workspaceId: ws.id, name: "main", createdById: owner.userId })
    .returning();
  let browser: Browser;
  afterAll(async () => {
    await browser?.close();
  });

  it("the microphone says how to turn voice on", { timeout: 60_000 }, async () => {
    browser = await launchChromium();
    const page = await (await browser.newContext({ viewport: { width: 360, height: 740 } })).newPage();
    await page.goto(cp.loginUrl!);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    await page.goto(`${cp.url}/#/t/${session!.id}`);
    // aria-disabled, yet it answers a tap with the explanation (Playwright counts it as not enabled).
    const button = page.getByRole("button", { name: "Voice input (off)" });
    const status = page.locator(".voice-message");
    // Tapped again until it answers: the first tap can land before the view has wired its handler.
    await waitFor("the hint", async () => {
      await button.click({ force: true });
      return (await status.textContent())?.includes("DEEPGRAM_API_KEY");
    });
    expect(await page.getByLabel("What you said").isDisabled()).toBe(true);
    expect(await page.evaluate(() => document.documentElement.scrollWidth - innerWidth)).toBeLessThanOrEqual(
      0,
    );
  });
});
