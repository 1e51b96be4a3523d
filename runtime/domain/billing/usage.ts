/** What a user (or an operator about a user) reads about usage: this period's minutes against the plan. */
import type { Plan } from "../../platform/billing-plans.ts";
import type { DayMinutes, WorkspaceMinutes } from "../../store/billing.ts";
import type { AuthorizedStore } from "../../store/store.ts";
import { type Plans, periodOf } from "./plans.ts";

export interface UsageReport {
  userId: string;
  period: { start: string; end: string };
  plan: Plan;
  minutes: number;
  /** null: the plan includes unlimited minutes. */
  includedMinutes: number | null;
  remainingMinutes: number | null;
  /** This period's minutes at the end of the period if use goes on at the average rate so far. */
  projectedMinutes: number;
  workspaces: WorkspaceMinutes[];
  days: DayMinutes[];
  subscriptionStatus: string | null;
}

/** `userId` omitted: the scope's own user. An operator scope names the user; a user scope naming another is NotFound. */
export async function usageReport(
  scope: AuthorizedStore,
  plans: Plans,
  userId?: string,
): Promise<UsageReport> {
  const now = plans.now();
  const period = periodOf(now);
  const account = await scope.billing.account(userId);
  const plan = plans.planOf(account.plan);
  const workspaces = await scope.billing.minutesByWorkspace(period.start, account.userId);
  const days = await scope.billing.minutesByDay(period.start, account.userId);
  const minutes = workspaces.reduce((n, w) => n + w.minutes, 0);
  const elapsed = Math.max(60_000, now.getTime() - period.start.getTime());
  const length = period.end.getTime() - period.start.getTime();
  return {
    userId: account.userId,
    period: { start: period.start.toISOString(), end: period.end.toISOString() },
    plan,
    minutes,
    includedMinutes: plan.includedMinutes,
    remainingMinutes: plan.includedMinutes === null ? null : Math.max(0, plan.includedMinutes - minutes),
    projectedMinutes: Math.round((minutes * length) / elapsed),
    workspaces,
    days,
    subscriptionStatus: account.subscriptionStatus,
  };
}
