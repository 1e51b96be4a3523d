/**
 * Workspaces through the authorization layer: reads, the rows a create writes, and the row lock, build
 * and state change a hibernate, wake or destroy request makes. The rules (limits, the state machine) are
 * the domain's (domain/workspaces/service.ts); this module only reads and writes what it is asked to, for
 * the rows the actor may reach.
 */
import { and, asc, desc, eq, ne, sql } from "drizzle-orm";
import { NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import { currentTraceparent } from "../platform/tracing.ts";
import type { Access } from "./access.ts";
import { BUILD_QUEUED_CHANNEL } from "./channels.ts";
import type { BuildReason, BuildRow, BuildTransition, WorkspaceRow, WorkspaceState } from "./rows.ts";
import { workspaceBuilds, workspaces, workspaceVolumes } from "./schema.ts";

export interface NewWorkspace {
  name: string;
  state: WorkspaceState;
  driver: string;
  location: string;
  serverType: string;
  volumeSizeGb: number;
}

/** Where the relay reaches a workspace's terminal endpoint: its open instance's addresses and port. */
export interface BoxTerminalAddress {
  /** The open instance: what the shared resolver (boxnet/path-resolver.ts) keys its path memory on. */
  instanceId: string;
  /** Only the Host header of the upstream request: the resolver dials the socket. */
  host: string;
  publicIp: string | null;
  tailnetIp: string | null;
  port: number;
}

export type BoxTerminalLookup =
  | { ok: true; address: BoxTerminalAddress }
  /** The workspace is not ready, or has no open instance with a terminal address: the box is asleep. */
  | { ok: false; state: string };

export class WorkspaceStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /** Live workspaces (destroyed ones are history, not resources). */
  async list(): Promise<WorkspaceRow[]> {
    const scope = this.#access.workspaceCondition("workspace.read", "workspace", workspaces.id);
    return this.#access.db
      .select()
      .from(workspaces)
      .where(and(ne(workspaces.state, "destroyed"), scope))
      .orderBy(asc(workspaces.createdAt));
  }

  async get(id: string): Promise<WorkspaceRow> {
    const scope = this.#access.workspaceCondition("workspace.read", "workspace", workspaces.id);
    if (!isUuid(id)) throw new NotFound("workspace");
    const [row] = await this.#access.db
      .select()
      .from(workspaces)
      .where(and(eq(workspaces.id, id), ne(workspaces.state, "destroyed"), scope));
    if (!row) throw new NotFound("workspace");
    return row;
  }

  /** Sets the idle autostop timeout in minutes (null: never); the workspace as it is now. */
  async setIdleTimeout(id: string, minutes: number | null): Promise<WorkspaceRow> {
    const scope = this.#access.workspaceCondition("workspace.configure", "workspace", workspaces.id);
    if (!isUuid(id)) throw new NotFound("workspace");
    const [row] = await this.#access.db
      .update(workspaces)
      .set({ idleTimeoutMinutes: minutes, autostopWarnedAt: null })
      .where(and(eq(workspaces.id, id), ne(workspaces.state, "destroyed"), scope))
      .returning();
    if (!row) throw new NotFound("workspace");
    return row;
  }

  /** "Keep running": the workspace counts as active at `at`, and any autostop warning is void. */
  async keepRunning(id: string, at: Date): Promise<WorkspaceRow> {
    const scope = this.#access.workspaceCondition("workspace.configure", "workspace", workspaces.id);
    if (!isUuid(id)) throw new NotFound("workspace");
    const [row] = await this.#access.db
      .update(workspaces)
      .set({
        lastActivityAt: sql`GREATEST(${workspaces.lastActivityAt}, ${at.toISOString()}::timestamptz)`,
        autostopWarnedAt: null,
      })
      .where(and(eq(workspaces.id, id), ne(workspaces.state, "destroyed"), scope))
      .returning();
    if (!row) throw new NotFound("workspace");
    return row;
  }

  /** Serializes one user's concurrent creates (until the transaction ends), so a limit cannot be raced. */
  async lockCreation(): Promise<void> {
    this.#access.require("workspace.create", "workspace");
    const { userId } = this.#access.user("workspace");
    await this.#access.db.execute(
      sql`SELECT pg_advisory_xact_lock(hashtextextended(${`create:${userId}`}, 0))`,
    );
  }

  /** How many live workspaces the creating user has. */
  async countOwnLive(): Promise<number> {
    this.#access.require("workspace.create", "workspace");
    const { userId } = this.#access.user("workspace");
    const [{ live } = { live: 0 }] = await this.#access.db
      .select({ live: sql<number>`count(*)::int` })
      .from(workspaces)
      .where(and(eq(workspaces.ownerId, userId), ne(workspaces.state, "destroyed")));
    return live;
  }

  /** A new workspace of the acting user, with its volume record. */
  async insert(fields: NewWorkspace): Promise<WorkspaceRow> {
    this.#access.require("workspace.create", "workspace");
    const { userId } = this.#access.user("workspace");
    const [workspace] = await this.#access.db
      .insert(workspaces)
      .values({ ...fields, ownerId: userId })
      .returning();
    await this.#access.db
      .insert(workspaceVolumes)
      .values({ workspaceId: workspace!.id, sizeGb: workspace!.volumeSizeGb });
    return workspace!;
  }

  /** Locks the live workspace row for a transition request (until the transaction ends). */
  async lockForChange(id: string): Promise<WorkspaceRow> {
    const scope = this.#access.workspaceCondition("workspace.transition", "workspace", workspaces.id);
    if (!isUuid(id)) throw new NotFound("workspace");
    const [row] = await this.#access.db
      .select()
      .from(workspaces)
      .where(and(eq(workspaces.id, id), scope))
      .for("update");
    if (!row || row.state === "destroyed") throw new NotFound("workspace");
    return row;
  }

  /** The workspace's newest build of `transition`, which a duplicate request answers with. */
  async latestBuild(id: string, transition: BuildTransition): Promise<BuildRow | undefined> {
    const scope = this.#access.workspaceCondition(
      "workspace.transition",
      "workspace",
      workspaceBuilds.workspaceId,
    );
    const [latest] = await this.#access.db
      .select()
      .from(workspaceBuilds)
      .where(and(eq(workspaceBuilds.workspaceId, id), eq(workspaceBuilds.transition, transition), scope))
      .orderBy(desc(workspaceBuilds.number))
      .limit(1);
    return latest;
  }

  /**
   * Inserts the next build of a workspace as pending and wakes the workers (NOTIFY fires at commit). A
   * create's first build is a transition too: its creator holds that right.
   */
  async enqueueBuild(
    workspaceId: string,
    transition: BuildTransition,
    reason: BuildReason,
  ): Promise<BuildRow> {
    await this.#access.requireWorkspace("workspace.transition", "workspace", workspaceId);
    const [build] = await this.#access.db
      .insert(workspaceBuilds)
      .values({
        workspaceId,
        transition,
        reason,
        initiatorId: this.#access.initiatorId,
        // The build's span continues the request's trace, though a worker runs it later.
        traceContext: currentTraceparent(),
        number: sql`(SELECT coalesce(max(number), 0) + 1 FROM workspace_builds WHERE workspace_id = ${workspaceId})`,
      })
      .returning();
    await this.#access.db.execute(sql`SELECT pg_notify(${BUILD_QUEUED_CHANNEL}, ${build!.id})`);
    return build!;
  }

  /** Moves the workspace to the transitional state of a request just enqueued. */
  async moveTo(id: string, state: WorkspaceState): Promise<WorkspaceRow> {
    const scope = this.#access.workspaceCondition("workspace.transition", "workspace", workspaces.id);
    const [updated] = await this.#access.db
      .update(workspaces)
      .set({ state, stateChangedAt: new Date() })
      .where(and(eq(workspaces.id, id), scope))
      .returning();
    if (!updated) throw new NotFound("workspace");
    return updated;
  }

  /** The box's terminal endpoint, if the workspace is ready and its open instance has an address. */
  async terminalEndpoint(workspaceId: string): Promise<BoxTerminalLookup> {
    const scope = this.#access.workspaceCondition("workspace.connect", "workspace", workspaces.id);
    if (!isUuid(workspaceId)) throw new NotFound("workspace");
    const { rows } = await this.#access.db.execute<{
      state: string;
      instance_id: string | null;
      public_ip: string | null;
      tailnet_ip: string | null;
      terminal_port: number | null;
    }>(
      sql`SELECT ${workspaces.state} AS state, i.id AS instance_id, i.public_ip, i.tailnet_ip, i.terminal_port
            FROM ${workspaces}
            LEFT JOIN workspace_instances i ON i.workspace_id = ${workspaces.id} AND i.stopped_at IS NULL
           WHERE ${and(eq(workspaces.id, workspaceId), scope)}`,
    );
    const row = rows[0];
    if (!row) throw new NotFound("workspace");
    // `unhealthy` boxes are tried too: probes may have failed on a path that works again, and if not the
    // client hears "box unreachable" rather than "asleep".
    const host = row.public_ip ?? row.tailnet_ip;
    if (!["ready", "unhealthy"].includes(row.state) || !row.instance_id || !host || !row.terminal_port)
      return { ok: false, state: row.state };
    return {
      ok: true,
      address: {
        instanceId: row.instance_id,
        host,
        publicIp: row.public_ip,
        tailnetIp: row.tailnet_ip,
        port: row.terminal_port,
      },
    };
  }
}
