/**
 * What a box agent's API touches: finding the instance its token belongs to (`system:auth`), then, as
 * that instance's agent actor, only that instance and its workspace: heartbeats, readiness, the event
 * cursor, the actions it was asked to run, and the tailnet address it claims.
 */
import { and, asc, eq, inArray, isNull, lt, ne, sql } from "drizzle-orm";
import { NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Access } from "./access.ts";
import type { AgentLifecycle, InstanceRow, WorkspaceRow, WorkspaceState } from "./rows.ts";
import { agentActions, workspaceBuilds, workspaceInstances, workspaces } from "./schema.ts";

export interface AgentAction {
  id: string;
  kind: "keys" | "backup" | "restore" | "onboard";
  payload: Record<string, unknown>;
}

export class AgentStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /** The open instance whose agent token hashes to `tokenHash`, with its workspace. */
  async byTokenHash(tokenHash: string): Promise<{ instance: InstanceRow; workspace: WorkspaceRow } | null> {
    this.#access.require("credentials.verify", "agent");
    const [row] = await this.#access.db
      .select({ instance: workspaceInstances, workspace: workspaces })
      .from(workspaceInstances)
      .innerJoin(workspaces, eq(workspaces.id, workspaceInstances.workspaceId))
      .where(and(eq(workspaceInstances.agentTokenHash, tokenHash), isNull(workspaceInstances.stoppedAt)));
    return row ?? null;
  }

  async recordHeartbeat(report: {
    lifecycle: AgentLifecycle;
    agentVersion: string | null;
    lastError: string | null;
  }): Promise<void> {
    const instanceId = this.#instance();
    await this.#access.db
      .update(workspaceInstances)
      .set({
        agentLifecycle: report.lifecycle,
        agentVersion: report.agentVersion,
        agentLastError: report.lastError,
        lastHeartbeatAt: new Date(),
      })
      .where(eq(workspaceInstances.id, instanceId));
  }

  /**
   * The agent reports `ready`: its open instance is marked ready, a workspace waiting for it (`starting`,
   * or `unhealthy` unless the health probes marked it so) becomes `ready`, and on the instance's first
   * ready, the seconds since its start build started are returned (time-to-ready) with the operation that
   * build was (`create`: the workspace had no earlier successful start; `wake`: it had, the same rule as
   * BuildQueue.operationOf), else null.
   */
  async markReady(): Promise<{ seconds: number; operation: "create" | "wake" } | null> {
    const instanceId = this.#instance();
    return this.#access.db.transaction(async (tx) => {
      const open = and(eq(workspaceInstances.id, instanceId), isNull(workspaceInstances.stoppedAt));
      const [instance] = await tx
        .update(workspaceInstances)
        .set({ agentLifecycle: "ready", lastHeartbeatAt: new Date() })
        .where(open)
        .returning();
      if (!instance) return null;
      // Only a workspace waiting for its agent moves; one that is hibernating, failed or being destroyed
      // stays. One the health probes marked unhealthy stays too: its agent heartbeats but the control plane
      // cannot use its terminal, and only the probes (workers/health-prober.ts) can tell when that is over.
      const from: WorkspaceState[] = instance.probeUnhealthySince ? ["starting"] : ["starting", "unhealthy"];
      await tx
        .update(workspaces)
        .set({ state: "ready", stateChangedAt: new Date() })
        .where(and(eq(workspaces.id, instance.workspaceId), inArray(workspaces.state, from)));
      const [first] = await tx
        .update(workspaceInstances)
        .set({ readyAt: new Date() })
        .where(and(open, isNull(workspaceInstances.readyAt)))
        .returning();
      if (!first?.readyAt || !first.buildId) return null;
      const [build] = await tx.select().from(workspaceBuilds).where(eq(workspaceBuilds.id, first.buildId));
      if (!build?.startedAt) return null;
      const [earlier] = await tx
        .select({ id: workspaceBuilds.id })
        .from(workspaceBuilds)
        .where(
          and(
            eq(workspaceBuilds.workspaceId, build.workspaceId),
            eq(workspaceBuilds.transition, "start"),
            eq(workspaceBuilds.status, "succeeded"),
            lt(workspaceBuilds.number, build.number),
          ),
        )
        .limit(1);
      return {
        seconds: (first.readyAt.getTime() - build.startedAt.getTime()) / 1000,
        operation: earlier ? "wake" : "create",
      };
    });
  }

  /** Records the outcome of actions the agent ran; ids of no open action of this workspace change nothing. */
  async completeActions(
    done: Array<{ id: string; at: Date; ok: boolean; error: string | null }>,
  ): Promise<void> {
    const workspaceId = this.#workspace();
    for (const c of done) {
      if (!isUuid(c.id)) continue;
      await this.#access.db
        .update(agentActions)
        .set({ completedAt: c.at, ok: c.ok, error: c.error })
        .where(
          and(
            eq(agentActions.id, c.id),
            eq(agentActions.workspaceId, workspaceId),
            isNull(agentActions.completedAt),
          ),
        );
    }
  }

  /** Which of `ids` are actions of this workspace. */
  async ownActionIds(ids: string[]): Promise<string[]> {
    const workspaceId = this.#workspace();
    const ours = ids.filter((id) => isUuid(id));
    if (ours.length === 0) return [];
    const rows = await this.#access.db
      .select({ id: agentActions.id })
      .from(agentActions)
      .where(and(inArray(agentActions.id, ours), eq(agentActions.workspaceId, workspaceId)));
    return rows.map((r) => r.id);
  }

  /** The workspace's actions not yet done, oldest first. */
  async pendingActions(limit: number): Promise<AgentAction[]> {
    const workspaceId = this.#workspace();
    return this.#access.db
      .select({ id: agentActions.id, kind: agentActions.kind, payload: agentActions.payload })
      .from(agentActions)
      .where(and(eq(agentActions.workspaceId, workspaceId), isNull(agentActions.completedAt)))
      .orderBy(asc(agentActions.createdAt))
      .limit(limit);
  }

  /** Locks the instance's event cursor (until the transaction ends) and returns it. */
  async lockEventCursor(): Promise<number> {
    const instanceId = this.#instance();
    const [locked] = await this.#access.db
      .select({ ackedThrough: workspaceInstances.eventsAckedThrough })
      .from(workspaceInstances)
      .where(eq(workspaceInstances.id, instanceId))
      .for("update");
    if (!locked) throw new NotFound("instance");
    return locked.ackedThrough;
  }

  async advanceEventCursor(ackedThrough: number): Promise<void> {
    const instanceId = this.#instance();
    await this.#access.db
      .update(workspaceInstances)
      .set({ eventsAckedThrough: ackedThrough })
      .where(eq(workspaceInstances.id, instanceId));
  }

  /**
   * Whether another live instance holds `ip` as its tailnet address. Only the answer crosses to the agent:
   * never which instance it is.
   */
  async tailnetAddressTaken(ip: string): Promise<boolean> {
    const instanceId = this.#instance();
    const [row] = await this.#access.db
      .select({ one: sql`1` })
      .from(workspaceInstances)
      .where(
        and(
          eq(workspaceInstances.tailnetIp, ip),
          isNull(workspaceInstances.stoppedAt),
          ne(workspaceInstances.id, instanceId),
        ),
      )
      .limit(1);
    return Boolean(row);
  }

  /**
   * Stores the proven tailnet address of the open instance. `taken` when another instance proved the same
   * address first (the partial unique index).
   */
  async recordTailnetAddress(ip: string): Promise<"recorded" | "taken"> {
    const instanceId = this.#instance();
    try {
      await this.#access.db
        .update(workspaceInstances)
        .set({ tailnetIp: ip })
        .where(and(eq(workspaceInstances.id, instanceId), isNull(workspaceInstances.stoppedAt)));
      return "recorded";
    } catch (err) {
      const code = (err as { code?: string }).code ?? (err as { cause?: { code?: string } }).cause?.code;
      if (code === "23505") return "taken";
      throw err;
    }
  }

  #instance(): string {
    this.#access.require("agent.report", "instance");
    return this.#access.agent("instance").instanceId;
  }

  #workspace(): string {
    this.#access.require("agent.report", "instance");
    return this.#access.agent("instance").workspaceId;
  }
}
