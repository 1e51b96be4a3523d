import { describe, expect, it } from "vitest";
import { parsePlans } from "../../platform/billing-plans.ts";
import type { BillingConfig } from "../../platform/config.ts";
import { Plans } from "./plans.ts";

const config = {
  plans: parsePlans(
    JSON.stringify({
      free: { includedMinutes: 10, maxRunning: 1, boxSizes: ["cx22"], overage: "stop" },
      pro: { includedMinutes: 1000, maxRunning: 3, overage: "billed" },
    }),
  ),
  defaultPlan: "free",
} as unknown as BillingConfig;

describe("plans", () => {
  it("knows only the configured plans, not the names every object inherits", () => {
    const plans = new Plans(config);
    expect(plans.has("pro")).toBe(true);
    // An admin's PUT /plan, or a subscription's berth_plan metadata, naming one of these must be refused, and
    // a stored one must fall back to the default plan rather than to a function with no limits.
    for (const name of ["constructor", "toString", "__proto__", "hasOwnProperty", "valueOf"]) {
      expect(plans.has(name), name).toBe(false);
      expect(plans.planOf(name).name, name).toBe("free");
    }
  });
});
