/**
 * Tailnet address claims against real terminal endpoints (the box's built-in ttyd-protocol server) on
 * loopback: 127.0.0.2 and 127.0.0.3 stand for two boxes' tailnet addresses, allowed as in local mode.
 */
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { startBuiltinTerminalServer } from "../../../box/terminal/builtin-server.ts";
import { addressPolicy } from "../../boxnet/address-policy.ts";
import { createLogger } from "../../platform/logger.ts";
import { SecretBox } from "../../platform/secret-box.ts";
import { users, workspaceInstances } from "../../store/schema.ts";
import { storeWorkspaceSecrets } from "../../store/secrets.ts";
import { Store } from "../../store/store.ts";
import { useDatabase } from "../../test/database.ts";
import { insertWorkspace } from "../../test/fixtures.ts";
import { TEST_SECRET_KEYS } from "../../test/keys.ts";
import { waitFor } from "../../test/wait.ts";
import { TailnetClaims } from "./tailnet-claims.ts";

describe("tailnet address claims", async () => {
  const database = await useDatabase();
  const { db, pool } = database;
  const secretBox = SecretBox.fromSpec(TEST_SECRET_KEYS);
  const [owner] = await db.insert(users).values({ externalId: "user_claims" }).returning();

  /**
   * A workspace with a live instance and its own ttyd credential, its endpoint listening on `host`. Every
   * box after the first listens on the same port, as every VM's ttyd listens on 7681.
   */
  let sharedPort = 0;
  async function box(host: string) {
    const ws = await insertWorkspace(db, owner!.id, { name: `w-${randomBytes(3).toString("hex")}` });
    const credential = `berth:${randomBytes(12).toString("hex")}`;
    await storeWorkspaceSecrets(db, secretBox, ws.id, { "ttyd-credential": credential });
    const endpoint = await startBuiltinTerminalServer({
      host,
      port: sharedPort,
      credential,
      tmux: { socket: { path: `/tmp/berth-claims-unused-${process.pid}.sock` } },
    });
    afterAll(() => endpoint.close());
    sharedPort = endpoint.port;
    const [inst] = await db
      .insert(workspaceInstances)
      .values({
        workspaceId: ws.id,
        agentTokenHash: randomBytes(16).toString("hex"),
        publicIp: "127.0.0.1",
        terminalPort: endpoint.port,
      })
      .returning();
    return { instance: { id: inst!.id, workspaceId: ws.id, terminalPort: endpoint.port }, endpoint };
  }
  const stored = async (id: string) =>
    (await pool.query("SELECT tailnet_ip FROM workspace_instances WHERE id = $1", [id])).rows[0].tailnet_ip;
  const refusals = async (id: string) =>
    (
      await pool.query(
        "SELECT details->>'reason' AS reason FROM audit_log WHERE action = 'instance.tailnet_claim_refused' AND target_id = $1",
        [id],
      )
    ).rows.map((r) => r.reason);

  // Every verification starts by asking the address policy, synchronously: what it was asked shows which
  // claims started a verification.
  const policy = addressPolicy({ allowLoopback: true });
  const policyAsked: string[] = [];
  const claims = new TailnetClaims({
    store: new Store(database, { secretBox }),
    log: createLogger("silent"),
    allowAddress: (path, host) => {
      policyAsked.push(host);
      return policy(path, host);
    },
    timeoutMs: 500,
  });

  const honest = await box("127.0.0.2");
  const victim = await box("127.0.0.3");

  it("stores an address once the box there accepts this workspace's credential", async () => {
    expect(await claims.verify(honest.instance, "127.0.0.2")).toBe("verified");
    expect(await stored(honest.instance.id)).toBe("127.0.0.2");
  });

  it("refuses another box's address: its endpoint rejects the claimant's credential", async () => {
    // The victim has not reported its own address yet; the attacker's box claims it first.
    const attacker = await box("127.0.0.4");
    expect(await claims.verify(attacker.instance, "127.0.0.3")).toBe("refused");
    expect(await stored(attacker.instance.id)).toBeNull();
    expect(await refusals(attacker.instance.id)).toEqual(["endpoint_answered_401"]);
    // The rightful owner still proves it.
    expect(await claims.verify(victim.instance, "127.0.0.3")).toBe("verified");
  });

  it("refuses an address a live instance already holds, before any proof is asked", async () => {
    const attacker = await box("127.0.0.6");
    expect(await claims.verify(attacker.instance, "127.0.0.2")).toBe("refused");
    expect(await refusals(attacker.instance.id)).toEqual(["held_by_another_instance"]);
    expect(await stored(honest.instance.id)).toBe("127.0.0.2");
  });

  it("keeps two live instances from ever holding one address (the database enforces it)", async () => {
    const other = await box("127.0.0.9");
    await expect(
      pool.query("UPDATE workspace_instances SET tailnet_ip = '127.0.0.2' WHERE id = $1", [
        other.instance.id,
      ]),
    ).rejects.toThrow(/workspace_instances_live_tailnet_ip_uniq/);
  });

  it("refuses what the address policy forbids (metadata, link-local), without contacting it", async () => {
    const attacker = await box("127.0.0.7");
    expect(await claims.verify(attacker.instance, "169.254.169.254")).toBe("refused");
    expect(await refusals(attacker.instance.id)).toEqual(["address_policy"]);
  });

  it("leaves the address unset while nothing answers there, and tries again only after a pause", async () => {
    const early = await box("127.0.0.8");
    const closed = { ...early.instance, terminalPort: 1 }; // nothing listens on port 1
    expect(await claims.verify(closed, "127.0.0.8")).toBe("unreachable");
    expect(await stored(early.instance.id)).toBeNull();
    const asked = policyAsked.length;
    claims.consider(early.instance, "127.0.0.8"); // same address again within the pause: skipped
    expect(policyAsked.length).toBe(asked);
    // A claim not tried before starts at once: what shows that the one above did not start.
    const fresh = await box("127.0.0.10");
    claims.consider(fresh.instance, "127.0.0.10");
    expect(policyAsked.slice(asked)).toEqual(["127.0.0.10"]);
    await waitFor("the fresh claim", async () => (await stored(fresh.instance.id)) === "127.0.0.10");
    expect(await stored(early.instance.id)).toBeNull();
    expect(await claims.verify(early.instance, "127.0.0.8")).toBe("verified"); // ttyd up now
  });
});
