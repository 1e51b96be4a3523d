/**
 * Onboarding requests: the interview's result as an `onboard` action (agent_actions) that the workspace's
 * agent applies on the volume and reports back. The owner asks for one and reads its outcome.
 */
import { and, eq } from "drizzle-orm";
import { NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Access } from "./access.ts";
import { agentActions } from "./schema.ts";

export interface OnboardingRow {
  id: string;
  workspaceId: string;
  payload: Record<string, unknown>;
  createdAt: Date;
  completedAt: Date | null;
  ok: boolean | null;
  error: string | null;
}

export class OnboardingStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  async request(workspaceId: string, payload: Record<string, unknown>): Promise<OnboardingRow> {
    await this.#access.requireWorkspace("workspace.onboard", "workspace", workspaceId);
    const [row] = await this.#access.db
      .insert(agentActions)
      .values({ workspaceId, kind: "onboard", payload })
      .returning();
    return row!;
  }

  async get(workspaceId: string, id: string): Promise<OnboardingRow> {
    await this.#access.requireWorkspace("workspace.onboard", "workspace", workspaceId);
    if (!isUuid(id)) throw new NotFound("onboarding");
    const [row] = await this.#access.db
      .select()
      .from(agentActions)
      .where(
        and(
          eq(agentActions.id, id),
          eq(agentActions.workspaceId, workspaceId),
          eq(agentActions.kind, "onboard"),
        ),
      );
    if (!row) throw new NotFound("onboarding");
    return row;
  }
}
