/**
 * On the local driver every box is on 127.0.0.1, so a preview port could name any process on this machine.
 * The proxy dials only a listener of the preview's own workspace (checked from /proc): a port held by
 * another process (here the test's own server, or the box's own agent) is refused without a connection,
 * while a dev server started in the workspace's session is served.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { json } from "../test/control-plane.ts";
import {
  createReadyWorkspace,
  startDevServerInWorkspace,
  startLocalControlPlane,
} from "../test/local-control-plane.ts";

describe("a local preview reaches only the workspace's own listener", async () => {
  const cp = await startLocalControlPlane();
  const token = cp.localToken;

  // A process outside the workspace, listening on loopback: it must never see a connection.
  let connections = 0;
  const outsider = createServer((_req, res) => res.end("outsider secret"));
  outsider.on("connection", () => connections++);
  await new Promise<void>((r) => outsider.listen(0, "127.0.0.1", r));
  const outsiderPort = (outsider.address() as AddressInfo).port;
  afterAll(() => new Promise<void>((r) => outsider.close(() => r())));

  const workspaceId = await createReadyWorkspace(cp);

  const declare = async (port: number) => {
    const res = await cp.api(`/api/v1/workspaces/${workspaceId}/previews`, {
      method: "POST",
      token,
      json: { port },
    });
    expect(res.status).toBe(201);
    return (await json(res)).preview.id as string;
  };

  it("refuses a port another process on this machine listens on, and never connects", async () => {
    const previewId = await declare(outsiderPort);
    const res = await cp.api(`/api/v1/previews/${previewId}/`, { token });
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("A process outside this workspace listens on this port");
    expect(connections).toBe(0);
  });

  it("refuses the box's own agent port", async () => {
    const agentPort = cp.agentState(workspaceId)!.agentPort;
    const previewId = await declare(agentPort);
    const res = await cp.api(`/api/v1/previews/${previewId}/healthz`, { token });
    expect(res.status).toBe(403);
  });

  it("serves a dev server started in the workspace's session", async () => {
    const { preview } = await startDevServerInWorkspace(cp, workspaceId);
    const res = await cp.api(`/api/v1/previews/${preview.id}/`, { token });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("Directory listing");
    expect(connections).toBe(0);
  });
});
