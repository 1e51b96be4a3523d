/**
 * Plans, periods and quotas: which plan a user is on, the period usage is counted in, and the check every
 * start (create, wake) passes before a build is made. The plans themselves are configuration
 * (BERTH_BILLING_PLANS, platform/billing-plans.ts).
 */
import type { Plan } from "../../platform/billing-plans.ts";
import type { BillingConfig } from "../../platform/config.ts";
import { PaymentRequired } from "../../platform/errors.ts";
import type { AuthorizedStore } from "../../store/store.ts";

export interface Period {
  start: Date;
  end: Date;
  /** `2026-05`: names the period in notification dedupe keys. */
  key: string;
}

/** Usage is counted per calendar month, UTC. */
export function periodOf(now: Date): Period {
  const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const end = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  return { start, end, key: start.toISOString().slice(0, 7) };
}

export interface StartRequest {
  ownerId: string;
  serverType: string;
  /** The workspace being woken; null for a create. */
  workspaceId: string | null;
}

export class Plans {
  readonly #config: BillingConfig;
  readonly #clock: () => Date;

  constructor(config: BillingConfig, clock: () => Date = () => new Date()) {
    this.#config = config;
    this.#clock = clock;
  }

  now(): Date {
    return this.#clock();
  }

  /** A user's plan: their own, or the default (also when theirs was removed from the configuration). */
  planOf(name: string | null): Plan {
    return (
      (name && this.has(name) && this.#config.plans[name]) || this.#config.plans[this.#config.defaultPlan]!
    );
  }

  /** Own keys only: `in` would also take the names every object inherits (`constructor`, `toString`, …). */
  has(name: string): boolean {
    return Object.hasOwn(this.#config.plans, name);
  }

  get names(): string[] {
    return Object.keys(this.#config.plans);
  }

  /**
   * Refuses a start the owner's plan does not cover, with a PaymentRequired naming the quota: the box size,
   * the running workspaces, or (on a hard-stop plan) the period's minutes. Runs inside the start's
   * transaction, so nothing is created when it throws.
   */
  async checkStart(scope: AuthorizedStore, start: StartRequest): Promise<void> {
    await scope.billing.lockStarts(start.ownerId);
    const account = await scope.billing.account(start.ownerId);
    const plan = this.planOf(account.plan);
    if (plan.boxSizes && !plan.boxSizes.includes(start.serverType)) {
      throw new PaymentRequired(
        "quota_box_size",
        `the ${plan.name} plan does not include box size ${start.serverType} (included: ${plan.boxSizes.join(", ")})`,
        { quota: "boxSizes", plan: plan.name },
      );
    }
    if (plan.maxRunning !== null) {
      const running = await scope.billing.runningCount(start.ownerId, start.workspaceId);
      if (running >= plan.maxRunning) {
        throw new PaymentRequired(
          "quota_running_workspaces",
          `the ${plan.name} plan runs at most ${plan.maxRunning} workspace(s) at once; hibernate one first`,
          { quota: "maxRunning", plan: plan.name, limit: plan.maxRunning },
        );
      }
    }
    if (plan.overage === "stop" && plan.includedMinutes !== null) {
      const used = await scope.billing.totalMinutes(periodOf(this.#clock()).start, start.ownerId);
      if (used >= plan.includedMinutes) {
        throw new PaymentRequired(
          "quota_minutes",
          `this period's ${plan.includedMinutes} included minutes of the ${plan.name} plan are used up`,
          { quota: "includedMinutes", plan: plan.name, limit: plan.includedMinutes, used },
        );
      }
    }
  }
}
