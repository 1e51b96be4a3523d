/**
 * Claude-aware sessions end to end on this machine: the API, a real local box agent, real tmux, and a
 * scripted `claude` on the box's PATH (runtime/test/scripted-claude.ts) that runs its auto-updater and
 * then the very hook commands the agent installed. The session's Claude state travels hook → agent →
 * agent API → Postgres → sessions API / SSE.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ensureWebBuild } from "../app/web-build.ts";
import { upsertUser } from "../domain/identity/actor.ts";
import { createLogger } from "../platform/logger.ts";
import { HAVE_CHROMIUM, launchChromium, RESULTS } from "../test/browser.ts";
import { json } from "../test/control-plane.ts";
import { startLocalControlPlane } from "../test/local-control-plane.ts";
import { makeScriptedClaude } from "../test/scripted-claude.ts";
import { waitFor } from "../test/wait.ts";

describe("Claude state per session, from the hooks the agent installed", async () => {
  const claude = makeScriptedClaude();
  const cp = await startLocalControlPlane(
    {},
    { agentEnv: { PATH: `${claude.binDir}:${process.env.PATH ?? "/usr/bin:/bin"}` } },
  );
  const { pool } = cp.deps.database;
  const token = cp.localToken;
  let workspaceId = "";
  let sessionId = "";

  const claudeOf = async () => {
    const res = await cp.api(`/api/v1/sessions/${sessionId}`, { token });
    return (await json(res)).session.claude as { state: string; detail: string | null; since: string } | null;
  };
  const fired = () => {
    try {
      return readFileSync(join(claude.reportDir, "fired.log"), "utf8").trim().split("\n");
    } catch {
      return [];
    }
  };
  /** Types `<event> <json>` into the Claude pane, as if Claude Code reached that point, and waits for it. */
  const type = async (line: string) => {
    const before = fired().length;
    const socket = cp.agentState(workspaceId)!.tmuxSocket;
    execFileSync("tmux", ["-S", socket, "send-keys", "-t", "=main:", "-l", line]);
    execFileSync("tmux", ["-S", socket, "send-keys", "-t", "=main:", "Enter"]);
    await waitFor(`the scripted claude to fire ${line}`, () => fired().length > before);
    const last = fired().at(-1)!;
    expect(last).toMatch(/^fired \w+ 1$/); // exactly one Berth hook ran for the event
  };

  it("starts a session whose Claude pane runs the scripted claude", async () => {
    const res = await cp.api("/api/v1/workspaces", { method: "POST", token, json: { name: "claude" } });
    workspaceId = (await json(res)).workspace.id;
    await waitFor(
      "workspace ready",
      async () =>
        (await pool.query("SELECT state FROM workspaces WHERE id = $1", [workspaceId])).rows[0].state ===
        "ready",
      60_000,
    );
    const created = await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, {
      method: "POST",
      token,
      json: { name: "main" },
    });
    expect(created.status).toBe(201);
    sessionId = (await json(created)).session.id;
    expect(await claudeOf()).toBeNull();
    await waitFor(
      "the scripted claude's start",
      () => existsSync(join(claude.reportDir, "env.json")),
      60_000,
    );
  });

  it("turns the auto-updater off and keeps a global npm install inside the workspace", async () => {
    const env = JSON.parse(readFileSync(join(claude.reportDir, "env.json"), "utf8"));
    expect(env.DISABLE_AUTOUPDATER).toBe("1");
    const home = join(cp.workspacesRoot, workspaceId, "volume", "user", "home");
    expect(env.NPM_CONFIG_PREFIX).toBe(join(home, ".local"));
    // (npm masks UUID-like path parts in its output, so compare the tail.)
    expect(env.npmGlobalPrefix).toMatch(/\/volume\/user\/home\/\.local$/);
    expect(env.installStatus, env.installStderr).toBe(0);
    expect(existsSync(join(home, ".local", "lib", "node_modules", claude.updatePackage))).toBe(true);
    // The host's own global npm (what the updater overwrote before) has nothing of it.
    const hostPrefix = execFileSync("npm", ["prefix", "--global"], { encoding: "utf8" }).trim();
    expect(hostPrefix).not.toBe(join(home, ".local"));
    expect(existsSync(join(hostPrefix, "lib", "node_modules", claude.updatePackage))).toBe(false);
    expect(existsSync(join(hostPrefix, "bin", claude.updatePackage))).toBe(false);
  });

  it("goes working → needs you (the tool) → idle → error(rate_limit), through the API", async () => {
    await type('UserPromptSubmit {"prompt":"make the tests pass"}');
    await waitFor("working", async () => (await claudeOf())?.state === "working");

    await type('PermissionRequest {"tool_name":"Bash","tool_input":{"command":"npm test"}}');
    await waitFor("needs you", async () => (await claudeOf())?.state === "needs_you");
    expect(await claudeOf()).toMatchObject({ state: "needs_you", detail: "Bash" });
    // Claude Code's own Notification hook repeats it ~6 s later: no second notification.
    await type(
      'Notification {"notification_type":"permission_prompt","message":"Claude needs your permission"}',
    );

    await type('PostToolUse {"tool_name":"Bash"}');
    await waitFor("working again", async () => (await claudeOf())?.state === "working");
    await type('Stop {"stop_hook_active":false}');
    await waitFor("idle", async () => (await claudeOf())?.state === "idle");
    // ~60 s after Stop, idle_prompt for the same moment: still one notification.
    await type(
      'Notification {"notification_type":"idle_prompt","message":"Claude is waiting for your input"}',
    );

    await type('UserPromptSubmit {"prompt":"again"}');
    await waitFor("working", async () => (await claudeOf())?.state === "working");
    await type('StopFailure {"error":"rate_limit"}');
    await waitFor("error", async () => (await claudeOf())?.state === "error");
    const state = await claudeOf();
    expect(state).toMatchObject({ state: "error", detail: "rate_limit" });
    expect(Date.parse(state!.since)).toBeGreaterThan(0);

    // The workspace listing shows it per session too, and the inbox has one notification per real event.
    const list = await json(await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, { token }));
    expect(list.sessions[0].claude).toMatchObject({ state: "error", detail: "rate_limit" });
    const inbox = await waitFor("three notifications", async () => {
      const body = await json(await cp.api("/api/v1/notifications", { token }));
      return body.notifications.length >= 3 ? body.notifications : null;
    });
    const titles = inbox.map((n: { title: string }) => n.title).sort();
    expect(titles).toEqual([
      "Claude finished",
      "Claude needs your permission: Bash",
      "Claude stopped: rate limit",
    ]);
  });

  it("streams state changes to the owner's SSE feed", async () => {
    const controller = new AbortController();
    const res = await cp.api("/api/v1/notifications/stream", { token, signal: controller.signal });
    const reader = res.body!.getReader();
    let text = "";
    const read = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        text += new TextDecoder().decode(value);
      }
    })().catch(() => {});
    await waitFor("the stream to open", () => text.includes("retry:"));
    await type('UserPromptSubmit {"prompt":"live"}');
    await waitFor("a session event", () => /event: session\ndata: .*"state":"working"/.test(text));
    controller.abort();
    await read;
  });

  it.skipIf(!HAVE_CHROMIUM)("shows the state live in Chromium, per session and per workspace", async () => {
    await ensureWebBuild(createLogger("silent"));
    const browser = await launchChromium();
    afterAll(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(cp.loginUrl!);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    await page.goto(`${cp.url}/#/w/${workspaceId}`);
    await page.getByRole("link", { name: "main" }).waitFor();
    await type('PermissionRequest {"tool_name":"Edit","tool_input":{"file_path":"/w/a.ts"}}');
    await page.getByRole("status", { name: /^Claude: needs you: Edit/ }).waitFor({ timeout: 15_000 });
    await type('PostToolUse {"tool_name":"Edit"}');
    await page.getByRole("status", { name: /^Claude: working/ }).waitFor({ timeout: 15_000 });
    // The phone's list of workspaces: the card carries the workspace's badge and each session's.
    await page.setViewportSize({ width: 360, height: 740 });
    await page.goto(`${cp.url}/#/`);
    await expect.poll(() => page.getByRole("status", { name: /^Claude: working/ }).count()).toBe(2);
    await page.screenshot({ path: `${RESULTS}phone-claude-state.png`, fullPage: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > innerWidth);
    expect(overflow).toBe(false);
  });

  it("someone else's session state is a 404", async () => {
    const mallory = await upsertUser(cp.deps.store, "user_claude_mallory");
    const cookie = `berth_session=${await cp.deps.authenticator.sessionFor(mallory)}`;
    const res = await cp.api(`/api/v1/sessions/${sessionId}`, { headers: { cookie } });
    expect(res.status).toBe(404);
    const list = await cp.api(`/api/v1/workspaces/${workspaceId}/sessions`, { headers: { cookie } });
    expect(list.status).toBe(404);
  });
});
