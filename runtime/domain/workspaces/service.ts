/**
 * Requests for workspace changes. Each one, in a single transaction: lock the workspace row, check the
 * state machine, and either answer with the build already doing it or enqueue a new build and move the
 * workspace to its transitional state. Nothing here touches a stack; the build worker does.
 */
import { and, desc, eq, ne, sql } from "drizzle-orm";
import { Conflict, NotFound } from "../../platform/errors.ts";
import type { SecretBox } from "../../platform/secret-box.ts";
import { writeAudit } from "../../store/audit-log.ts";
import type { Database, Db } from "../../store/client.ts";
import { type BUILD_REASONS, workspaceBuilds, workspaces, workspaceVolumes } from "../../store/schema.ts";
import type { Actor } from "../identity/actor.ts";
import { generateWorkspaceSecrets, storeWorkspaceSecrets } from "./secrets.ts";
import { ACTIONS, CREATE_RULE, type WorkspaceAction, type WorkspaceState } from "./state-machine.ts";

export type BuildRow = typeof workspaceBuilds.$inferSelect;
export type WorkspaceRow = typeof workspaces.$inferSelect;
export type BuildReason = (typeof BUILD_REASONS)[number];

export const BUILD_QUEUED_CHANNEL = "berth_build_queued";

export interface WorkspaceDefaults {
  location: string;
  serverType: string;
  volumeSizeGb: number;
  maxPerUser: number;
}

export interface CreateWorkspaceInput {
  name: string;
  location?: string | undefined;
  serverType?: string | undefined;
  volumeSizeGb?: number | undefined;
}

export interface TransitionResult {
  workspace: WorkspaceRow;
  build: BuildRow;
  /** True when an equivalent build already existed and no new one was made. */
  duplicate: boolean;
}

/** States in which the goal of an action is already reached or underway; asking again is a duplicate. */
const ALREADY: Record<Exclude<WorkspaceAction, "create">, readonly WorkspaceState[]> = {
  hibernate: ["hibernating", "hibernated"],
  wake: ["waking", "starting", "ready"],
  destroy: ["destroying"],
};

export class WorkspaceService {
  readonly #db: Db;
  readonly #box: SecretBox;
  readonly #driver: string;
  readonly #defaults: WorkspaceDefaults;

  constructor(deps: {
    database: Database;
    secretBox: SecretBox;
    driverName: string;
    defaults: WorkspaceDefaults;
  }) {
    this.#db = deps.database.db;
    this.#box = deps.secretBox;
    this.#driver = deps.driverName;
    this.#defaults = deps.defaults;
  }

  async create(actor: Actor, input: CreateWorkspaceInput, ip?: string): Promise<TransitionResult> {
    return this.#db.transaction(async (tx) => {
      // Serializes one user's concurrent creates so the per-user limit cannot be raced past.
      await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtextextended(${`create:${actor.userId}`}, 0))`);
      const [{ live } = { live: 0 }] = await tx
        .select({ live: sql<number>`count(*)::int` })
        .from(workspaces)
        .where(and(eq(workspaces.ownerId, actor.userId), ne(workspaces.state, "destroyed")));
      if (live >= this.#defaults.maxPerUser) {
        throw new Conflict(
          "workspace_limit",
          `you already have ${live} workspace(s); the limit is ${this.#defaults.maxPerUser}`,
        );
      }
      const [workspace] = await tx
        .insert(workspaces)
        .values({
          ownerId: actor.userId,
          name: input.name,
          state: CREATE_RULE.during,
          driver: this.#driver,
          location: input.location ?? this.#defaults.location,
          serverType: input.serverType ?? this.#defaults.serverType,
          volumeSizeGb: input.volumeSizeGb ?? this.#defaults.volumeSizeGb,
        })
        .returning();
      await tx
        .insert(workspaceVolumes)
        .values({ workspaceId: workspace!.id, sizeGb: workspace!.volumeSizeGb });
      await storeWorkspaceSecrets(tx, this.#box, workspace!.id, generateWorkspaceSecrets());
      const build = await enqueueBuild(tx, workspace!.id, CREATE_RULE.transition, "user", actor.userId);
      await writeAudit(tx, {
        actor: { kind: "user", userId: actor.userId },
        action: "workspace.create",
        targetType: "workspace",
        targetId: workspace!.id,
        ip: ip ?? null,
        details: { buildId: build.id, location: workspace!.location, serverType: workspace!.serverType },
      });
      return { workspace: workspace!, build, duplicate: false };
    });
  }

  /**
   * Hibernate, wake or destroy. `actor` null means the system (autostop, billing, reconciler); ownership is
   * then not checked, which is why only internal callers may pass null.
   */
  async request(
    actor: Actor | null,
    workspaceId: string,
    action: Exclude<WorkspaceAction, "create">,
    options: { reason?: BuildReason; ip?: string } = {},
  ): Promise<TransitionResult> {
    const rule = ACTIONS[action];
    return this.#db.transaction(async (tx) => {
      const [workspace] = await tx
        .select()
        .from(workspaces)
        .where(
          actor
            ? and(eq(workspaces.id, workspaceId), eq(workspaces.ownerId, actor.userId))
            : eq(workspaces.id, workspaceId),
        )
        .for("update");
      if (!workspace || workspace.state === "destroyed") throw new NotFound("workspace");

      if (ALREADY[action].includes(workspace.state)) {
        const [latest] = await tx
          .select()
          .from(workspaceBuilds)
          .where(
            and(
              eq(workspaceBuilds.workspaceId, workspaceId),
              eq(workspaceBuilds.transition, rule.transition),
            ),
          )
          .orderBy(desc(workspaceBuilds.number))
          .limit(1);
        if (latest) return { workspace, build: latest, duplicate: true };
      }
      if (!rule.from.includes(workspace.state)) {
        throw new Conflict("invalid_transition", `cannot ${action} a workspace that is ${workspace.state}`, {
          state: workspace.state,
        });
      }
      const build = await enqueueBuild(
        tx,
        workspaceId,
        rule.transition,
        options.reason ?? "user",
        actor?.userId ?? null,
      );
      const [updated] = await tx
        .update(workspaces)
        .set({ state: rule.during, stateChangedAt: new Date() })
        .where(eq(workspaces.id, workspaceId))
        .returning();
      await writeAudit(tx, {
        actor: actor ? { kind: "user", userId: actor.userId } : { kind: "system" },
        action: `workspace.${action}`,
        targetType: "workspace",
        targetId: workspaceId,
        ip: options.ip ?? null,
        details: { buildId: build.id, reason: options.reason ?? "user" },
      });
      return { workspace: updated!, build, duplicate: false };
    });
  }
}

/** Inserts the next build of a workspace as pending and wakes the workers (NOTIFY fires at commit). */
async function enqueueBuild(
  tx: Pick<Db, "insert" | "execute">,
  workspaceId: string,
  transition: BuildRow["transition"],
  reason: BuildReason,
  initiatorId: string | null,
): Promise<BuildRow> {
  const [build] = await tx
    .insert(workspaceBuilds)
    .values({
      workspaceId,
      transition,
      reason,
      initiatorId,
      number: sql`(SELECT coalesce(max(number), 0) + 1 FROM workspace_builds WHERE workspace_id = ${workspaceId})`,
    })
    .returning();
  await tx.execute(sql`SELECT pg_notify(${BUILD_QUEUED_CHANNEL}, ${build!.id})`);
  return build!;
}
