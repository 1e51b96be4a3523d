/**
 * The whole preview path on this machine: a dev server started inside the workspace's tmux session is
 * detected by the real box agent (its listening port and command), recorded by the agent API, and served
 * through the proxy in both forms, without anyone declaring it. Local mode's box address is 127.0.0.1.
 */
import { execFileSync } from "node:child_process";
import { request } from "node:http";
import { describe, expect, it } from "vitest";
import { json } from "../test/control-plane.ts";
import {
  createReadyWorkspace,
  startDevServerInWorkspace,
  startLocalControlPlane,
} from "../test/local-control-plane.ts";
import { waitFor } from "../test/wait.ts";

const DOMAIN = "preview.localhost";

describe("a detected preview on a local box", async () => {
  const cp = await startLocalControlPlane({ BERTH_PREVIEW_DOMAIN: DOMAIN });
  const token = cp.localToken;

  it("is detected by the agent and proxied in both forms", async () => {
    const workspaceId = await createReadyWorkspace(cp);
    const { preview } = await startDevServerInWorkspace(cp, workspaceId);
    const socket = cp.agentState(workspaceId)!.tmuxSocket;
    expect(preview).toMatchObject({ source: "detected", framework: expect.any(String) });

    const viaPath = await cp.api(`/api/v1/previews/${preview.id}/`, { token });
    expect(viaPath.status).toBe(200);
    expect(await viaPath.text()).toContain("Directory listing");

    const opened = await json(
      await cp.api(`/api/v1/previews/${preview.id}/open`, { method: "POST", token, json: {} }),
    );
    const u = new URL(opened.url);
    const get = (path: string, headers: Record<string, string>) =>
      new Promise<{ status: number; setCookie: string; body: string }>((resolve, reject) => {
        request({ host: "127.0.0.1", port: u.port, path, headers, agent: false }, (res) => {
          let body = "";
          res.on("data", (d) => {
            body += d;
          });
          res.on("end", () =>
            resolve({ status: res.statusCode!, setCookie: String(res.headers["set-cookie"] ?? ""), body }),
          );
        })
          .on("error", reject)
          .end();
      });
    const signIn = await get(`${u.pathname}${u.search}`, { host: u.host });
    expect(signIn.status).toBe(303);
    const page = await get("/", { host: u.host, cookie: signIn.setCookie.split(";", 1)[0]! });
    expect(page.status).toBe(200);
    expect(page.body).toContain("Directory listing");

    // Stopping the dev server closes the detected preview, and the proxy stops routing it.
    execFileSync("tmux", ["-S", socket, "send-keys", "-t", "=dev:0.0", "C-c", ""]);
    await waitFor(
      "the preview closed",
      async () => (await cp.api(`/api/v1/previews/${preview.id}/`, { token })).status === 404,
      20_000,
    );
  });
});
