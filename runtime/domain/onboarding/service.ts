/**
 * Onboarding: the reviewed drafts become an `onboard` action that the workspace's agent applies on the
 * volume (the control plane never writes into a volume itself). Requesting one is audited; its outcome is
 * what the agent reports.
 */
import { cloneUrlProblem, type OnboardAction } from "../../../box/protocol.ts";
import { Invalid } from "../../platform/errors.ts";
import type { OnboardingRow } from "../../store/onboarding.ts";
import type { AuthorizedStore } from "../../store/store.ts";
import type { InterviewAnswers, OnboardingDraft } from "./interview.ts";

export interface OnboardingStatus {
  id: string;
  project: string;
  state: "pending" | "done" | "failed";
  error: string | null;
  createdAt: Date;
  completedAt: Date | null;
}

/** A git URL the agent may clone: the same rule the agent applies again (box/protocol.ts). */
export function checkCloneUrl(url: string | undefined, allowLocal: boolean): string {
  if (!url)
    throw new Invalid("invalid_input", "body.answers.project.url: is required to clone a project", {
      field: "answers.project.url",
    });
  const problem = cloneUrlProblem(url, { allowLocal });
  if (problem)
    throw new Invalid("invalid_input", `body.answers.project.url: ${problem}`, {
      field: "answers.project.url",
    });
  return url;
}

export async function requestOnboarding(
  scope: AuthorizedStore,
  workspaceId: string,
  answers: InterviewAnswers,
  draft: OnboardingDraft,
  opts: { allowLocal: boolean; trust: boolean; ip: string },
): Promise<OnboardingStatus> {
  const source: OnboardAction["source"] =
    answers.project.source === "git"
      ? { kind: "git", url: checkCloneUrl(answers.project.url, opts.allowLocal) }
      : { kind: answers.project.source };
  const payload: Omit<OnboardAction, "id"> = {
    project: answers.project.name,
    source,
    claudeMd: draft.claudeMd,
    generated: draft.generated,
    permissions: draft.permissions,
    personal: draft.personal,
    trust: opts.trust,
  };
  const row = await scope.transaction(async (tx) => {
    const created = await tx.onboarding.request(workspaceId, payload);
    await tx.audit({
      action: "workspace.onboard",
      targetType: "workspace",
      targetId: workspaceId,
      ip: opts.ip,
      details: { project: answers.project.name, source: source.kind },
    });
    return created;
  });
  return present(row);
}

export async function onboardingStatus(
  scope: AuthorizedStore,
  workspaceId: string,
  id: string,
): Promise<OnboardingStatus> {
  return present(await scope.onboarding.get(workspaceId, id));
}

function present(row: OnboardingRow): OnboardingStatus {
  return {
    id: row.id,
    project: String((row.payload as { project?: unknown }).project ?? ""),
    state: row.completedAt === null ? "pending" : row.ok ? "done" : "failed",
    error: row.error,
    createdAt: row.createdAt,
    completedAt: row.completedAt,
  };
}
