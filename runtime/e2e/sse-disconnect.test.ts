/**
 * SSE streams whose client goes away before the stream is set up: the route is still awaiting (the
 * caller's build, a LISTEN) when the connection closes, so its `close` event has already fired by the time
 * the stream would listen for it. Whatever the stream took (NOTIFY subscriptions, its keepalive) must be
 * released all the same.
 */
import type { IncomingMessage } from "node:http";
import { afterAll, describe, it, vi } from "vitest";
import { BuildStore } from "../store/builds.ts";
import { BUILD_LOG_CHANNEL, NOTIFICATION_CHANNEL, SESSION_STATE_CHANNEL } from "../store/channels.ts";
import { agentChecksIn } from "../test/agent.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { waitFor } from "../test/wait.ts";

describe("an SSE client that disconnects while its stream is being set up", async () => {
  const cp = await startTestControlPlane();
  cp.driver.afterStart = agentChecksIn(cp);

  // Every NOTIFY subscription taken from here on, by channel, until its unsubscribe runs.
  const live = new Map<string, number>();
  const taken = new Map<string, number>();
  const subscribe = cp.deps.listener.subscribe.bind(cp.deps.listener);
  let holdSubscribe: Promise<void> | null = null;
  let subscribeCalls = 0;
  vi.spyOn(cp.deps.listener, "subscribe").mockImplementation(async (channel, handler) => {
    subscribeCalls++;
    if (holdSubscribe) await holdSubscribe;
    const unsubscribe = await subscribe(channel, handler);
    live.set(channel, (live.get(channel) ?? 0) + 1);
    taken.set(channel, (taken.get(channel) ?? 0) + 1);
    let done = false;
    return () => {
      if (!done) live.set(channel, live.get(channel)! - 1);
      done = true;
      unsubscribe();
    };
  });
  afterAll(() => vi.restoreAllMocks());

  // The server's side of each request, to see when it has noticed the client is gone.
  const requests: IncomingMessage[] = [];
  cp.server.on("request", (req: IncomingMessage) => requests.push(req));
  const serverSide = (path: string) =>
    waitFor(`the server to get ${path}`, () => requests.find((r) => r.url === path));

  it("releases the notification stream's subscriptions", async () => {
    let release!: () => void;
    holdSubscribe = new Promise<void>((r) => {
      release = r;
    });
    const calls = subscribeCalls;
    const controller = new AbortController();
    const path = "/api/v1/notifications/stream";
    const res = fetch(cp.url + path, {
      headers: { authorization: `Bearer ${cp.localToken}` },
      signal: controller.signal,
    }).catch(() => null);
    await waitFor("the stream to subscribe", () => subscribeCalls > calls);
    const req = await serverSide(path);
    controller.abort();
    await res;
    await waitFor("the server to see the client go", () => req.destroyed);
    const before = taken.get(NOTIFICATION_CHANNEL) ?? 0;
    holdSubscribe = null;
    release();
    await waitFor("the stream to subscribe", () => (taken.get(NOTIFICATION_CHANNEL) ?? 0) > before);
    await waitFor(
      "the stream's subscriptions to be released",
      () => !live.get(NOTIFICATION_CHANNEL) && !live.get(SESSION_STATE_CHANNEL),
      5_000,
    );
  });

  it("releases the build log follower's subscription", async () => {
    // The build is held running, so a follower that never learns its client left would wait on it.
    let releaseBuild!: () => void;
    cp.driver.gate = new Promise<void>((r) => {
      releaseBuild = r;
    });
    cp.driver.script("start", { kind: "succeed", steps: ["one"] });
    const created = await json(
      await cp.api("/api/v1/workspaces", { method: "POST", token: cp.localToken, json: {} }),
    );
    const buildId: string = created.build.id;
    try {
      await waitFor(
        "the build to run",
        async () =>
          (await json(await cp.api(`/api/v1/builds/${buildId}`, { token: cp.localToken }))).build.status ===
          "running",
      );

      // The route's lookup of the build is held until the client has gone.
      let releaseGet!: () => void;
      const heldGet = new Promise<void>((r) => {
        releaseGet = r;
      });
      let getCalled = false;
      const get = BuildStore.prototype.get;
      const spy = vi.spyOn(BuildStore.prototype, "get").mockImplementation(async function (
        this: BuildStore,
        id,
      ) {
        if (id === buildId && !getCalled) {
          getCalled = true;
          await heldGet;
        }
        return get.call(this, id);
      });

      const controller = new AbortController();
      const path = `/api/v1/builds/${buildId}/log`;
      const res = fetch(cp.url + path, {
        headers: { authorization: `Bearer ${cp.localToken}` },
        signal: controller.signal,
      }).catch(() => null);
      await waitFor("the route to look the build up", () => getCalled);
      const req = await serverSide(path);
      controller.abort();
      await res;
      await waitFor("the server to see the client go", () => req.destroyed);
      const before = taken.get(BUILD_LOG_CHANNEL) ?? 0;
      releaseGet();
      await waitFor("the follower to subscribe", () => (taken.get(BUILD_LOG_CHANNEL) ?? 0) > before);
      spy.mockRestore();
      await waitFor("the follower to let go of the build's log", () => !live.get(BUILD_LOG_CHANNEL), 5_000);
    } finally {
      cp.driver.gate = null;
      releaseBuild();
    }
    await waitFor(
      "the build to finish",
      async () =>
        (await json(await cp.api(`/api/v1/builds/${buildId}`, { token: cp.localToken }))).build.status ===
        "succeeded",
    );
  });
});
