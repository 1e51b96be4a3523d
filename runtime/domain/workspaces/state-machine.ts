/**
 * Which user-visible action is allowed in which workspace state, and where builds leave the workspace.
 * Every transition is listed; anything not listed is refused with 409 and the current state.
 */
import type { BuildTransition, WorkspaceState } from "../../store/rows.ts";

export type WorkspaceAction = "create" | "hibernate" | "wake" | "destroy";

interface ActionRule {
  transition: BuildTransition;
  /** States the action may start from. */
  from: readonly WorkspaceState[];
  /** The state while its build is pending or running. */
  during: WorkspaceState;
}

export const ACTIONS: Record<Exclude<WorkspaceAction, "create">, ActionRule> = {
  hibernate: { transition: "stop", from: ["ready", "unhealthy", "failed"], during: "hibernating" },
  wake: { transition: "start", from: ["hibernated", "failed"], during: "waking" },
  destroy: {
    transition: "destroy",
    from: ["ready", "unhealthy", "hibernated", "failed"],
    during: "destroying",
  },
};

export const CREATE_RULE = { transition: "start" as const, during: "provisioning" as const };

/** States in which a build is in flight; the action that caused it answers duplicates with that build. */
export const TRANSITIONAL: ReadonlySet<WorkspaceState> = new Set([
  "provisioning",
  "starting",
  "hibernating",
  "waking",
  "destroying",
]);

/** Where a finished build leaves the workspace. A start waits for the agent in `starting`. */
export function stateAfterBuild(
  transition: BuildTransition,
  outcome: "succeeded" | "failed" | "canceled",
  agentReady: boolean,
): WorkspaceState {
  if (outcome !== "succeeded") return "failed";
  switch (transition) {
    case "start":
      return agentReady ? "ready" : "starting";
    case "stop":
      return "hibernated";
    case "destroy":
      return "destroyed";
  }
}

/** The action whose build put the workspace in `state`, to recognise duplicate requests. */
export function actionDuring(state: WorkspaceState): WorkspaceAction | null {
  if (state === "provisioning") return "create";
  for (const [action, rule] of Object.entries(ACTIONS))
    if (rule.during === state) return action as WorkspaceAction;
  return null;
}
