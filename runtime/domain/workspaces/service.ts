/**
 * Requests for workspace changes. Each one, in a single transaction through the caller's authorized
 * store: lock the workspace row, check the state machine, and either answer with the build already doing
 * it or enqueue a new build and move the workspace to its transitional state. Nothing here touches a
 * stack; the build worker does. Who may ask is the authorization layer's decision: the owner, or a system
 * actor whose job it is (autostop, billing), never anyone else (their request finds no workspace).
 */
import { Conflict } from "../../platform/errors.ts";
import type { BuildReason, BuildRow, WorkspaceRow, WorkspaceState } from "../../store/rows.ts";
import type { AuthorizedStore } from "../../store/store.ts";
import type { StartRequest } from "../billing/plans.ts";
import { generateWorkspaceSecrets } from "./secrets.ts";
import { ACTIONS, CREATE_RULE, type WorkspaceAction } from "./state-machine.ts";

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

/** The billing plan's check before every start (domain/billing/plans.ts); throws PaymentRequired. */
export interface StartQuota {
  checkStart(scope: AuthorizedStore, start: StartRequest): Promise<void>;
}

export class WorkspaceService {
  readonly #driver: string;
  readonly #defaults: WorkspaceDefaults;
  readonly #quota: StartQuota | null;

  constructor(deps: { driverName: string; defaults: WorkspaceDefaults; quota?: StartQuota }) {
    this.#driver = deps.driverName;
    this.#defaults = deps.defaults;
    this.#quota = deps.quota ?? null;
  }

  /** A new workspace of the scope's user, its secrets, and its first (start) build. */
  async create(scope: AuthorizedStore, input: CreateWorkspaceInput, ip?: string): Promise<TransitionResult> {
    return scope.transaction(async (tx) => {
      // Serializes one user's concurrent creates so the per-user limit cannot be raced past.
      await tx.workspaces.lockCreation();
      const live = await tx.workspaces.countOwnLive();
      if (live >= this.#defaults.maxPerUser) {
        throw new Conflict(
          "workspace_limit",
          `you already have ${live} workspace(s); the limit is ${this.#defaults.maxPerUser}`,
        );
      }
      const serverType = input.serverType ?? this.#defaults.serverType;
      if (this.#quota && tx.actor.kind === "user") {
        await this.#quota.checkStart(tx, { ownerId: tx.actor.userId, serverType, workspaceId: null });
      }
      const workspace = await tx.workspaces.insert({
        name: input.name,
        state: CREATE_RULE.during,
        driver: this.#driver,
        location: input.location ?? this.#defaults.location,
        serverType,
        volumeSizeGb: input.volumeSizeGb ?? this.#defaults.volumeSizeGb,
      });
      await tx.secrets.store(workspace.id, generateWorkspaceSecrets());
      const build = await tx.workspaces.enqueueBuild(workspace.id, CREATE_RULE.transition, "user");
      await tx.audit({
        action: "workspace.create",
        targetType: "workspace",
        targetId: workspace.id,
        ip: ip ?? null,
        details: { buildId: build.id, location: workspace.location, serverType: workspace.serverType },
      });
      return { workspace, build, duplicate: false };
    });
  }

  /**
   * Hibernate, wake or destroy. `reason` says why (the user's own request unless a system actor names its
   * job: `autostop`, `billing`).
   */
  async request(
    scope: AuthorizedStore,
    workspaceId: string,
    action: Exclude<WorkspaceAction, "create">,
    options: { reason?: BuildReason; ip?: string } = {},
  ): Promise<TransitionResult> {
    const rule = ACTIONS[action];
    const reason = options.reason ?? "user";
    return scope.transaction(async (tx) => {
      const workspace = await tx.workspaces.lockForChange(workspaceId);
      if (ALREADY[action].includes(workspace.state)) {
        const latest = await tx.workspaces.latestBuild(workspace.id, rule.transition);
        if (latest) return { workspace, build: latest, duplicate: true };
      }
      if (!rule.from.includes(workspace.state)) {
        throw new Conflict("invalid_transition", `cannot ${action} a workspace that is ${workspace.state}`, {
          state: workspace.state,
        });
      }
      if (action === "wake" && this.#quota) {
        await this.#quota.checkStart(tx, {
          ownerId: workspace.ownerId,
          serverType: workspace.serverType,
          workspaceId: workspace.id,
        });
      }
      const build = await tx.workspaces.enqueueBuild(workspace.id, rule.transition, reason);
      const updated = await tx.workspaces.moveTo(workspace.id, rule.during);
      await tx.audit({
        action: `workspace.${action}`,
        targetType: "workspace",
        targetId: workspace.id,
        ip: options.ip ?? null,
        details: { buildId: build.id, reason },
      });
      return { workspace: updated, build, duplicate: false };
    });
  }
}
