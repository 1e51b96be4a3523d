import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config.ts";

const plans = (value: unknown) => ({ BERTH_BILLING_PLANS: JSON.stringify(value) });
const failure = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error("expected the configuration to be refused");
};

describe("billing plans configuration", () => {
  it("defaults to one unlimited plan that stops nothing", () => {
    const { billing } = loadConfig({});
    expect(billing.defaultPlan).toBe("unlimited");
    expect(billing.plans.unlimited).toMatchObject({ includedMinutes: null, overage: "billed" });
    expect(billing.stripeSecretKey).toBeNull();
  });

  it("reads plans, and the first is the default unless one is named", () => {
    const env = plans({
      free: { includedMinutes: 600, maxRunning: 1, boxSizes: ["cx22"], overage: "stop" },
      pro: { includedMinutes: 6000, overage: "billed" },
    });
    expect(loadConfig(env).billing.defaultPlan).toBe("free");
    const c = loadConfig({ ...env, BERTH_BILLING_DEFAULT_PLAN: "pro" });
    expect(c.billing.defaultPlan).toBe("pro");
    expect(c.billing.plans.pro).toEqual({
      name: "pro",
      includedMinutes: 6000,
      maxRunning: null,
      boxSizes: null,
      overage: "billed",
    });
  });

  it("refuses a bad plan at startup, naming the setting and the field", () => {
    expect(failure({ BERTH_BILLING_PLANS: "{not json" })).toMatch(/^BERTH_BILLING_PLANS: must be JSON/);
    expect(failure(plans({}))).toMatch(/^BERTH_BILLING_PLANS: must define at least one plan/);
    expect(failure(plans({ free: { includedMinutes: -1, overage: "stop" } }))).toMatch(
      /^BERTH_BILLING_PLANS: free\.includedMinutes: /,
    );
    expect(failure(plans({ free: { includedMinutes: 10, overage: "maybe" } }))).toMatch(
      /^BERTH_BILLING_PLANS: free\.overage: /,
    );
    expect(failure(plans({ free: { includedMinutes: 10, overage: "stop", extra: 1 } }))).toMatch(
      /^BERTH_BILLING_PLANS: free: /,
    );
    expect(failure(plans({ "Bad Name": { includedMinutes: 10, overage: "stop" } }))).toMatch(
      /^BERTH_BILLING_PLANS: /,
    );
    expect(
      failure({
        ...plans({ free: { includedMinutes: 10, overage: "stop" } }),
        BERTH_BILLING_DEFAULT_PLAN: "gold",
      }),
    ).toMatch(/^BERTH_BILLING_DEFAULT_PLAN: names no plan/);
    expect(failure({ STRIPE_SECRET_KEY: "pk_test_x" })).toMatch(/^STRIPE_SECRET_KEY: /);
    expect(failure({ STRIPE_WEBHOOK_SECRET: "nope" })).toMatch(/^STRIPE_WEBHOOK_SECRET: /);
  });
});
