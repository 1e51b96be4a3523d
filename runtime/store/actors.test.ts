/**
 * Named actors and their rights, through the authorization layer on real Postgres: an agent reaches its
 * own instance's workspace and nothing else, a system actor does its job and no one's user actions, and
 * every refusal is NotFound.
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { cancelBuild } from "../domain/builds/cancel.ts";
import { WorkspaceService } from "../domain/workspaces/service.ts";
import { NotFound } from "../platform/errors.ts";
import { SecretBox } from "../platform/secret-box.ts";
import { useDatabase } from "../test/database.ts";
import { insertWorkspace } from "../test/fixtures.ts";
import { TEST_SECRET_KEYS } from "../test/keys.ts";
import { actorName, agentActor, operatorFor, SYSTEM, SYSTEM_ROLES, type UserActor } from "./actors.ts";
import { RIGHTS, rightsOf } from "./policy.ts";
import { sessions, workspaceBuilds, workspaceInstances } from "./schema.ts";
import { storeWorkspaceSecrets } from "./secrets.ts";
import { Store } from "./store.ts";

describe("named actors", async () => {
  const database = await useDatabase();
  const { db, pool } = database;
  const secretBox = SecretBox.fromSpec(TEST_SECRET_KEYS);
  const store = new Store(database, { secretBox });
  const service = new WorkspaceService({
    driverName: "local",
    defaults: { location: "l", serverType: "s", volumeSizeGb: 10, maxPerUser: 5 },
  });

  /** A user with a ready workspace, its open instance, a session, a detected preview and a build. */
  async function tenant(name: string) {
    const user = await store.as(SYSTEM.auth).users.upsert(`user_${name}`);
    const workspace = await insertWorkspace(db, user.userId, { name, state: "ready" });
    await storeWorkspaceSecrets(db, secretBox, workspace.id, { "ttyd-credential": `cred-${name}` });
    const [instance] = await db
      .insert(workspaceInstances)
      .values({ workspaceId: workspace.id, agentTokenHash: randomBytes(16).toString("hex") })
      .returning();
    const [session] = await db
      .insert(sessions)
      .values({ workspaceId: workspace.id, name: "main", createdById: user.userId })
      .returning();
    const [build] = await db
      .insert(workspaceBuilds)
      .values({
        workspaceId: workspace.id,
        number: 1,
        transition: "start",
        reason: "user",
        status: "pending",
      })
      .returning();
    return { user, workspace, instance: instance!, session: session!, build: build! };
  }

  const x = await tenant("x");
  const y = await tenant("y");
  const agentX = store.as(agentActor(x.instance));
  const notFound = expect.any(NotFound);
  const rowsOf = async (table: string, workspaceId: string) =>
    (await pool.query(`SELECT * FROM ${table} WHERE workspace_id = $1 ORDER BY id`, [workspaceId])).rows;

  describe("the agent of instance X", () => {
    it("reads its own workspace", async () => {
      expect((await agentX.workspaces.get(x.workspace.id)).id).toBe(x.workspace.id);
      expect((await agentX.sessions.listOf(x.workspace.id)).map((s) => s.name)).toEqual(["main"]);
      expect(await agentX.secrets.terminalCredential(x.workspace.id)).toBe("cred-x");
      expect((await agentX.workspaces.list()).map((w) => w.id)).toEqual([x.workspace.id]);
    });

    it("cannot read instance Y's workspace: NotFound", async () => {
      await expect(agentX.workspaces.get(y.workspace.id)).rejects.toEqual(notFound);
      await expect(agentX.sessions.listOf(y.workspace.id)).rejects.toEqual(notFound);
      await expect(agentX.sessions.get(y.session.id)).rejects.toEqual(notFound);
      await expect(agentX.secrets.terminalCredential(y.workspace.id)).rejects.toEqual(notFound);
      await expect(agentX.workspaces.terminalEndpoint(y.workspace.id)).rejects.toEqual(notFound);
      expect(await agentX.sessions.findOpenByName(y.workspace.id, "main")).toBeNull();
    });

    it("cannot write instance Y's workspace: NotFound, and nothing changes", async () => {
      const before = {
        sessions: await rowsOf("sessions", y.workspace.id),
        builds: await rowsOf("workspace_builds", y.workspace.id),
        workspace: (await pool.query("SELECT * FROM workspaces WHERE id = $1", [y.workspace.id])).rows,
      };
      await expect(agentX.sessions.close(y.session.id)).rejects.toEqual(notFound);
      await expect(agentX.sessions.insert(y.workspace.id, "evil")).rejects.toEqual(notFound);
      await expect(agentX.workspaces.lockForChange(y.workspace.id)).rejects.toEqual(notFound);
      await expect(agentX.builds.cancelPending(y.build.id)).rejects.toEqual(notFound);
      await expect(agentX.secrets.store(y.workspace.id, { "ttyd-credential": "mine" })).rejects.toEqual(
        notFound,
      );
      await expect(
        agentX.terminalTokens.record({
          jti: crypto.randomUUID(),
          userId: y.user.userId,
          sessionId: y.session.id,
          expiresAt: new Date(Date.now() + 60_000),
        }),
      ).rejects.toEqual(notFound);
      expect({
        sessions: await rowsOf("sessions", y.workspace.id),
        builds: await rowsOf("workspace_builds", y.workspace.id),
        workspace: (await pool.query("SELECT * FROM workspaces WHERE id = $1", [y.workspace.id])).rows,
      }).toEqual(before);
    });

    it("writes what it reports into its own instance and workspace only", async () => {
      await agentX.agents.recordHeartbeat({ lifecycle: "ready", agentVersion: "t", lastError: null });
      await agentX.previews.detected(5173, { process: "vite", framework: "vite" });
      const id = await agentX.notifications.createForOwner({
        sessionId: null,
        kind: "needs_input",
        title: "t",
        body: "",
        dedupeKey: "k1",
        createdAt: new Date(),
      });
      const beats = await pool.query(
        "SELECT id FROM workspace_instances WHERE last_heartbeat_at IS NOT NULL",
      );
      expect(beats.rows.map((r) => r.id)).toEqual([x.instance.id]);
      expect((await rowsOf("previews", x.workspace.id)).map((p) => p.port)).toEqual([5173]);
      expect(await rowsOf("previews", y.workspace.id)).toEqual([]);
      const { rows } = await pool.query("SELECT user_id, workspace_id FROM notifications WHERE id = $1", [
        id,
      ]);
      expect(rows).toEqual([{ user_id: x.user.userId, workspace_id: x.workspace.id }]);
    });

    it("stores log lines for its own workspace only, and reads none", async () => {
      const line = (workspaceId: string) => ({
        time: new Date(),
        workspaceId,
        instanceId: x.instance.id,
        source: "agent" as const,
        level: "info" as const,
        message: `line for ${workspaceId}`,
        fields: {},
        traceId: null,
      });
      await store.as(SYSTEM.logs).logs.ensurePartitions();
      await expect(agentX.logs.append([line(y.workspace.id)])).rejects.toEqual(notFound);
      await expect(agentX.logs.append([line(x.workspace.id), line(y.workspace.id)])).rejects.toEqual(
        notFound,
      );
      await agentX.logs.append([line(x.workspace.id)]);
      await expect(agentX.logs.search({ workspaceId: x.workspace.id, limit: 10 })).rejects.toEqual(notFound);
      // The owner of X reads it; the owner of Y reads neither X's lines nor every line.
      expect(
        (await store.as(x.user).logs.search({ workspaceId: x.workspace.id, limit: 10 })).entries,
      ).toHaveLength(1);
      await expect(store.as(y.user).logs.search({ workspaceId: x.workspace.id, limit: 10 })).rejects.toEqual(
        notFound,
      );
      await expect(store.as(y.user).logs.search({ limit: 10 })).rejects.toEqual(notFound);
      const { rows } = await pool.query("SELECT count(*)::int AS n FROM log_entries");
      expect(rows[0].n).toBe(1);
    });

    it("has no user rights on its own workspace either", async () => {
      await expect(agentX.sessions.close(x.session.id)).rejects.toEqual(notFound);
      await expect(agentX.previews.declare(x.workspace.id, 3000)).rejects.toEqual(notFound);
      await expect(service.request(agentX, x.workspace.id, "hibernate")).rejects.toEqual(notFound);
      await expect(agentX.notifications.inbox(10)).rejects.toEqual(notFound);
    });
  });

  describe("the reconciler", () => {
    const reconciler = store.as(SYSTEM.reconciler);

    it("reads every live workspace, which is its job", async () => {
      const live = (await reconciler.reconcile.live()).map((w) => w.id);
      expect(live).toEqual(expect.arrayContaining([x.workspace.id, y.workspace.id]));
    });

    it("cannot do what only users do: NotFound, and nothing changes", async () => {
      const builds = await rowsOf("workspace_builds", x.workspace.id);
      await expect(service.create(reconciler, { name: "sneaky" })).rejects.toEqual(notFound);
      await expect(service.request(reconciler, x.workspace.id, "destroy")).rejects.toEqual(notFound);
      await expect(cancelBuild(reconciler, x.build.id)).rejects.toEqual(notFound);
      await expect(reconciler.sessions.listOf(x.workspace.id)).rejects.toEqual(notFound);
      await expect(reconciler.sessions.insert(x.workspace.id, "evil")).rejects.toEqual(notFound);
      await expect(reconciler.previews.get(crypto.randomUUID())).rejects.toEqual(notFound);
      await expect(reconciler.secrets.read(x.workspace.id, "ttyd-credential")).rejects.toEqual(notFound);
      await expect(reconciler.notifications.inbox(10)).rejects.toEqual(notFound);
      await expect(reconciler.users.upsert("user_forged")).rejects.toEqual(notFound);
      await expect(reconciler.buildQueue.claim("reconciler")).rejects.toEqual(notFound);
      expect(await rowsOf("workspace_builds", x.workspace.id)).toEqual(builds);
      expect((await pool.query("SELECT 1 FROM users WHERE external_id = 'user_forged'")).rowCount).toBe(0);
    });
  });

  describe("system actors with a transition right", () => {
    it("stop a workspace for their reason, named in the build and the audit log", async () => {
      const z = await tenant("z");
      // One build in flight per workspace: the fixture's pending start is out of the way first.
      await pool.query("UPDATE workspace_builds SET status = 'canceled', finished_at = now() WHERE id = $1", [
        z.build.id,
      ]);
      const result = await service.request(store.as(SYSTEM.autostop), z.workspace.id, "hibernate", {
        reason: "autostop",
      });
      expect(result.build).toMatchObject({ reason: "autostop", initiatorId: null, transition: "stop" });
      const { rows } = await pool.query(
        "SELECT actor_kind, actor_id, details->>'actor' AS actor FROM audit_log WHERE target_id = $1",
        [z.workspace.id],
      );
      expect(rows).toEqual([{ actor_kind: "system", actor_id: null, actor: "system:autostop" }]);
    });
  });

  describe("operators", () => {
    it("are admins acting as system:operator; anyone else is refused with NotFound", () => {
      const admin: UserActor = { ...x.user, isAdmin: true };
      expect(operatorFor(admin)).toEqual({ kind: "system", role: "operator", onBehalfOf: x.user.userId });
      expect(() => operatorFor(y.user)).toThrow(NotFound);
    });
  });

  describe("box telemetry", () => {
    const sample = (diskFreeBytes: number) => ({
      sampledAt: new Date(),
      loadAvg1: 0.5,
      memTotalBytes: 100,
      memAvailableBytes: 50,
      diskTotalBytes: 100,
      diskFreeBytes,
    });
    const none = { over: false, under: false };

    it("an agent records its own instance's sample only; its owner reads it, another user cannot", async () => {
      await agentX.telemetry.record(sample(40), none);
      const mine = await store.as(x.user).telemetry.ofWorkspace(x.workspace.id);
      expect(mine.latest).toMatchObject({ instanceId: x.instance.id, diskFreeBytes: 40 });
      expect(mine.history).toHaveLength(1);
      expect((await store.as(y.user).telemetry.ofWorkspace(y.workspace.id)).latest).toBeNull();
      await expect(store.as(y.user).telemetry.ofWorkspace(x.workspace.id)).rejects.toEqual(notFound);
      await expect(agentX.telemetry.ofWorkspace(x.workspace.id)).rejects.toEqual(notFound);
    });

    it("users cannot record, and only the fleet's readers see every box", async () => {
      await expect(store.as(x.user).telemetry.record(sample(1), none)).rejects.toEqual(notFound);
      await expect(store.as(x.user).telemetry.fleet(new Date(0))).rejects.toEqual(notFound);
      await expect(agentX.telemetry.fleet(new Date(0))).rejects.toEqual(notFound);
      await store.as(agentActor(y.instance)).telemetry.record(sample(70), none);
      const fleet = await store.as(SYSTEM.metrics).telemetry.fleet(new Date(0));
      expect(fleet.map((b) => b.workspaceId).sort()).toEqual([x.workspace.id, y.workspace.id].sort());
      await expect(store.as(SYSTEM.reconciler).telemetry.fleet(new Date(0))).rejects.toEqual(notFound);
    });

    it("the disk alert warns once per crossing and re-arms only when told", async () => {
      const over = { over: true, under: false };
      expect(await agentX.telemetry.record(sample(5), over)).toBe("warned");
      expect(await agentX.telemetry.record(sample(4), over)).toBeNull();
      expect(await agentX.telemetry.record(sample(50), { over: false, under: true })).toBe("rearmed");
      expect(await agentX.telemetry.record(sample(5), over)).toBe("warned");
    });
  });

  it("/metrics' actor counts the meter backlog and reads nothing else of billing", async () => {
    expect(await store.as(SYSTEM.metrics).billing.unsentCount()).toBeGreaterThanOrEqual(0);
    await expect(store.as(SYSTEM.metrics).billing.backlog()).rejects.toEqual(notFound);
    await expect(store.as(SYSTEM.metrics).billing.claimUnsent(new Date(), 1, 1000)).rejects.toEqual(notFound);
    await expect(store.as(x.user).billing.unsentCount()).rejects.toEqual(notFound);
  });

  describe("the rights table", () => {
    it("names every actor", () => {
      expect(actorName(agentActor(x.instance))).toBe(`system:agent(${x.instance.id})`);
      expect(actorName(SYSTEM.reconciler)).toBe("system:reconciler");
      expect(actorName(x.user)).toBe(`user:${x.user.userId}`);
    });

    it("gives each right only to the actors whose job needs it", () => {
      const holders = (right: (typeof RIGHTS)[number]) => [
        ...(rightsOf(x.user).has(right) ? ["user"] : []),
        ...(rightsOf(agentActor(x.instance)).has(right) ? ["agent"] : []),
        ...SYSTEM_ROLES.filter((role) => rightsOf(SYSTEM[role]).has(right)).map((r) => `system:${r}`),
      ];
      expect(holders("credentials.verify")).toEqual(["system:auth"]);
      expect(holders("build.run")).toEqual(["system:builds"]);
      expect(holders("workspace.create")).toEqual(["user"]);
      expect(holders("session.open")).toEqual(["user"]);
      expect(holders("agent.report")).toEqual(["agent"]);
      expect(holders("workspace.operate")).toEqual(["system:operator"]);
      expect(holders("workspace.transition")).toEqual(["user", "system:billing", "system:autostop"]);
      // system:backups opens the restic password to read a repository itself (export while hibernated).
      expect(holders("secret.read")).toEqual(["system:builds", "system:operator", "system:backups"]);
      expect(holders("backup.run")).toEqual(["user", "system:backups"]);
      expect(holders("telemetry.report")).toEqual(["agent"]);
      expect(holders("telemetry.read")).toEqual(["user", "system:operator", "system:metrics"]);
      expect(holders("log.write")).toEqual(["agent", "system:logs"]);
      expect(holders("log.read")).toEqual(["user", "system:operator"]);
      expect(holders("log.retain")).toEqual(["system:logs"]);
      // /metrics reads the meter outbox's size, not anyone's usage.
      expect(holders("billing.backlog")).toEqual(["system:metrics"]);
      expect(holders("billing.read")).not.toContain("system:metrics");
      // Every right is held by someone (a right nobody holds is dead code in the policy).
      expect(RIGHTS.filter((r) => holders(r).length === 0)).toEqual([]);
    });
  });
});
