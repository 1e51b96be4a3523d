/**
 * Quotas while running (after each metering tick): a user whose plan includes limited minutes is warned
 * at 80 % and at 100 % of them (one notification per running workspace, once per period each), and on a
 * hard-stop plan their running workspaces are hibernated with reason `billing`, as a normal stop build.
 * One statement reads every running user's standing; only the users past a threshold cost more.
 */
import { type Plans, periodOf } from "../domain/billing/plans.ts";
import type { WorkspaceService } from "../domain/workspaces/service.ts";
import type { Logger } from "../platform/logger.ts";
import { SYSTEM } from "../store/actors.ts";
import type { Store } from "../store/store.ts";

export interface EnforceReport {
  /** Users with a running workspace. */
  users: number;
  warned: number;
  /** Hibernate builds requested. */
  stopped: number;
}

export class QuotaEnforcer {
  readonly #store: Store;
  readonly #workspaces: WorkspaceService;
  readonly #plans: Plans;
  readonly #log: Logger;

  constructor(deps: { store: Store; workspaces: WorkspaceService; plans: Plans; log: Logger }) {
    this.#store = deps.store;
    this.#workspaces = deps.workspaces;
    this.#plans = deps.plans;
    this.#log = deps.log;
  }

  async run(): Promise<EnforceReport> {
    const scope = this.#store.as(SYSTEM.billing);
    const period = periodOf(this.#plans.now());
    const standings = await scope.billing.runningStandings(period.start);
    const warnings: Parameters<typeof scope.billing.warn>[0] = [];
    const toStop: string[] = [];
    for (const s of standings) {
      const plan = this.#plans.planOf(s.plan);
      if (plan.includedMinutes === null) continue;
      const used = plan.includedMinutes === 0 ? Number.POSITIVE_INFINITY : s.minutes / plan.includedMinutes;
      const over = used >= 1;
      if (used < 0.8) continue;
      const threshold = over ? 100 : 80;
      const title = over
        ? `You have used this period's ${plan.includedMinutes} included minutes`
        : `You have used 80 % of this period's ${plan.includedMinutes} included minutes`;
      const body =
        plan.overage === "stop"
          ? over
            ? "Your running workspaces are being hibernated; they can start again next period or on another plan."
            : "At 100 % your running workspaces will be hibernated."
          : over
            ? "Further minutes are billed as overage."
            : "Minutes past 100 % are billed as overage.";
      for (const workspaceId of s.workspaceIds) {
        // The 80 % warning is also sent when a jump goes straight past 100 %, so the order is always kept.
        for (const t of over ? [80, 100] : [threshold]) {
          warnings.push({
            userId: s.userId,
            workspaceId,
            title:
              t === threshold
                ? title
                : `You have used 80 % of this period's ${plan.includedMinutes} included minutes`,
            body: t === threshold ? body : "",
            dedupeKey: `billing:${period.key}:${t}`,
          });
        }
        if (over && plan.overage === "stop") toStop.push(workspaceId);
      }
    }
    const warned = await scope.billing.warn(warnings);
    let stopped = 0;
    for (const workspaceId of toStop) {
      try {
        const result = await this.#workspaces.request(scope, workspaceId, "hibernate", { reason: "billing" });
        if (!result.duplicate) stopped++;
      } catch (err) {
        // A workspace in a transition that cannot be interrupted is tried again on the next tick.
        this.#log.warn({ err, workspaceId }, "could not hibernate a workspace over its plan's minutes");
      }
    }
    if (warned || stopped) this.#log.info({ warned, stopped }, "billing quotas enforced");
    return { users: standings.length, warned, stopped };
  }
}
