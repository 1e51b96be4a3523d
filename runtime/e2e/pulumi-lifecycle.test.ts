/**
 * The lifecycle driven through the real Pulumi driver: API → build queue → PulumiDriver → Automation API →
 * a scripted `pulumi` executable (no real CLI can be installed here; see stacks/README.md).
 */
import { afterAll, describe, expect, it } from "vitest";
import { PulumiDriver } from "../../stacks/pulumi/driver.ts";
import { FakePulumi, type FakeResponse } from "../../stacks/pulumi/test/fake-cli.ts";
import { markAgentReady } from "../domain/agents/readiness.ts";
import { agentActor } from "../store/actors.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { waitFor } from "../test/wait.ts";

const outputs = (running: boolean): FakeResponse => ({
  outputs: {
    running,
    ...(running ? { serverId: "101", publicIpv4: "203.0.113.5" } : {}),
    volumeId: "201",
    volumeDevice: "/dev/disk/by-id/scsi-0HC_Volume_201",
    bucketName: "berth-bucket",
    r2AccessKeyId: "SECRET-r2-access-key-id",
    r2SecretAccessKey: "SECRET-r2-secret-access-key",
  },
  secretOutputs: ["r2AccessKeyId", "r2SecretAccessKey"],
});

describe("workspace lifecycle on the Pulumi driver", async () => {
  // create (start), hibernate (stop), wake (start), then destroy's protection-lifting up.
  const fake = await FakePulumi.create({
    responses: { up: [outputs(true), outputs(false), outputs(true), outputs(false)] },
  });
  afterAll(() => fake.dispose());
  const driver = new PulumiDriver(await fake.driverOptions({ imageSelector: "berth-role=workspace" }));
  const cp = await startTestControlPlane({}, { driver });
  const { pool } = cp.deps.database;
  const token = cp.localToken;
  const state = async (id: string) =>
    (await pool.query("SELECT state FROM workspaces WHERE id = $1", [id])).rows[0].state;
  const settle = (id: string, wanted: string) =>
    waitFor(
      `workspace ${wanted}`,
      async () => {
        const { rows } = await pool.query(
          "SELECT count(*)::int AS n FROM workspace_builds WHERE workspace_id = $1 AND status IN ('pending','running')",
          [id],
        );
        return rows[0].n === 0 && (await state(id)) === wanted;
      },
      30_000,
    );
  const agentReady = async (id: string) => {
    const { rows } = await pool.query(
      "SELECT id FROM workspace_instances WHERE workspace_id = $1 AND stopped_at IS NULL",
      [id],
    );
    await markAgentReady(cp.deps.store.as(agentActor({ id: rows[0].id, workspaceId: id })), cp.deps.metrics);
  };

  it("creates, hibernates, wakes and destroys through pulumi up/destroy", async () => {
    const created = await json(
      await cp.api("/api/v1/workspaces", { method: "POST", token, json: { name: "cloud" } }),
    );
    const id: string = created.workspace.id;
    await settle(id, "starting");
    const instance = await pool.query(
      "SELECT public_ip, terminal_port, provider_server_id FROM workspace_instances WHERE workspace_id = $1",
      [id],
    );
    expect(instance.rows[0]).toEqual({
      public_ip: "203.0.113.5",
      terminal_port: 7681,
      provider_server_id: "101",
    });
    await agentReady(id);
    expect(await state(id)).toBe("ready");

    await cp.api(`/api/v1/workspaces/${id}/hibernate`, { method: "POST", token });
    await settle(id, "hibernated");
    await cp.api(`/api/v1/workspaces/${id}/wake`, { method: "POST", token });
    await settle(id, "starting");
    await agentReady(id);
    await cp.api(`/api/v1/workspaces/${id}`, { method: "DELETE", token });
    await settle(id, "destroyed");

    const stack = `ws-${id}`;
    const commands = fake
      .calls()
      .filter((c) => c.stack === stack || c.argv.includes(stack))
      .map((c) => c.command);
    expect(commands.filter((c) => c === "up")).toHaveLength(4);
    expect(commands).toContain("destroy");
    expect(commands).toContain("stack rm");
    expect(fake.emptied).toHaveLength(1);

    // The R2 keys the stack produced are sealed at rest, not stored in the clear.
    const secrets = await pool.query(
      "SELECT name, sealed FROM workspace_secrets WHERE workspace_id = $1 AND name LIKE 'driver-%'",
      [id],
    );
    expect(secrets.rows.length).toBeGreaterThan(0);
    for (const r of secrets.rows) expect(r.sealed.includes(Buffer.from("SECRET-r2"))).toBe(false);
  });

  it("never puts a secret on any pulumi command line", () => {
    const secretish = /SECRET-|bat_|berth:[A-Za-z0-9_-]{20,}/;
    for (const call of fake.calls()) {
      for (const arg of call.argv) expect(arg).not.toMatch(secretish);
    }
  });

  it("shows operators the plan in readable form", async () => {
    fake.script({ responses: { preview: { events: [] } } });
    const created = await json(await cp.api("/api/v1/workspaces", { method: "POST", token, json: {} }));
    const id: string = created.workspace.id;
    // One read of the build's status: two separate reads could see `pending` and then `running`, and let
    // the diff run before the build has created the stack.
    await waitFor("the create build to finish", async () => {
      const { rows } = await pool.query("SELECT status FROM workspace_builds WHERE workspace_id = $1", [id]);
      return rows.length > 0 && rows.every((r) => r.status !== "pending" && r.status !== "running");
    });
    expect(fake.hasStack(`ws-${id}`)).toBe(true);
    // A stack still held by the build's last CLI call answers 409 (stack busy); an operator retries.
    const res = await waitFor("the diff", async () => {
      const r = await cp.api(`/api/v1/admin/workspaces/${id}/diff?transition=stop`, { token });
      if (r.status === 409) return null;
      return r;
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const body = await json(res);
    expect(body.text).toContain(`ws-${id}`);
    expect(fake.commands()).toContain("preview");
  });
});
