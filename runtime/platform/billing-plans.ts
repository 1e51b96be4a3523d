/**
 * Billing plans, read from BERTH_BILLING_PLANS (JSON) by config.ts: what each plan includes per period and
 * what happens past it. Validated at startup, so a bad plan stops the control plane naming the setting.
 */
import { z } from "zod";

const planSchema = z
  .object({
    /** Compute minutes included per period (calendar month, UTC); null: unlimited. */
    includedMinutes: z.number().int().min(0).nullable(),
    /** Workspaces running (or starting) at once; null: no plan limit (BERTH_MAX_WORKSPACES_PER_USER still holds). */
    maxRunning: z.number().int().min(1).nullable().default(null),
    /** Server types (box sizes) a workspace may be created with; null: any. */
    boxSizes: z
      .array(z.string().regex(/^[a-z0-9-]{2,32}$/))
      .min(1)
      .nullable()
      .default(null),
    /** Past the included minutes: keep running and bill the overage, or stop (hibernate, refuse starts). */
    overage: z.enum(["billed", "stop"]),
  })
  .strict();

export type Plan = z.infer<typeof planSchema> & { name: string };

export const plansSchema = z
  .record(z.string().regex(/^[a-z0-9_-]{1,32}$/, "plan names are 1-32 of a-z, 0-9, _ and -"), planSchema)
  .refine((plans) => Object.keys(plans).length > 0, "must define at least one plan");

/** Without BERTH_BILLING_PLANS: one plan with no limits, so local mode meters and shows usage, and stops nothing. */
export const UNLIMITED_PLANS: Record<string, Plan> = {
  unlimited: {
    name: "unlimited",
    includedMinutes: null,
    maxRunning: null,
    boxSizes: null,
    overage: "billed",
  },
};

/** Parses the JSON text of BERTH_BILLING_PLANS; throws a message naming the plan and field at fault. */
export function parsePlans(text: string): Record<string, Plan> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error("must be JSON: an object of plan name → plan");
  }
  const parsed = plansSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const at = issue.path.map(String).join(".");
    throw new Error(at ? `${at}: ${issue.message}` : issue.message);
  }
  return Object.fromEntries(Object.entries(parsed.data).map(([name, plan]) => [name, { ...plan, name }]));
}
