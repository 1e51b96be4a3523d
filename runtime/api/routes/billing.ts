/**
 * Billing over HTTP: the user's usage (`/api/v1/usage`, per workspace too), the operators' view and plan
 * change of any user, and Stripe's webhook endpoint, which is public (Stripe signs instead of signing in)
 * and reads its body raw because the signature covers the exact bytes.
 */
import { z } from "zod";
import { usageReport } from "../../domain/billing/usage.ts";
import { Invalid, NotFound } from "../../platform/errors.ts";
import { operatorFor } from "../../store/actors.ts";
import type { ApiRouter, AppContext, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";
import { doc } from "../openapi/doc.ts";

/** The webhook path: the JSON body parser leaves it alone (app/http-app.ts). */
export const STRIPE_WEBHOOK_PATH = "/api/v1/billing/webhooks";
/**
 * Every path the router answers with the webhook route (it ignores case and one trailing slash): the body
 * parser must leave all of them alone, or a signed body arrives parsed and never verifies.
 */
const STRIPE_WEBHOOK_PATHS = /^\/api\/v1\/billing\/webhooks\/?$/i;
export function isStripeWebhookPath(path: string): boolean {
  return STRIPE_WEBHOOK_PATHS.test(path);
}
const WEBHOOK_BODY_LIMIT = 512 * 1024;

async function readRaw(ctx: AppContext, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Invalid("body_too_large", "request body is too large");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** What the webhook documents as its body; the handler never parses it (the signature covers the raw bytes). */
const StripeEvent = z
  .looseObject({ id: z.string(), type: z.string(), created: z.int(), data: z.looseObject({}) })
  .describe("a Stripe event, exactly as Stripe sends it, verified by the Stripe-Signature header");

export function stripeWebhookRoutes(router: ApiRouter, deps: AppDeps): void {
  const webhookDoc = doc({
    summary: "Stripe's webhook: a signed event, applied once by event id",
    description:
      "Public: Stripe signs the raw body (header `Stripe-Signature`) instead of signing in. A body that " +
      "does not verify is 400 `invalid_signature`; without STRIPE_WEBHOOK_SECRET the endpoint is 404. " +
      "Subscription events (`customer.subscription.*`) set the user's subscription status and plan; " +
      "`applied` is false for a redelivered event id.",
    tag: "billing",
    body: StripeEvent,
    responses: { 200: z.object({ received: z.literal(true), applied: z.boolean() }) },
    errors: [404],
  });
  router.post(STRIPE_WEBHOOK_PATH, webhookDoc, async (ctx) => {
    const webhooks = deps.billing.webhooks;
    // Without a signing secret nothing could be verified: the endpoint does not exist.
    if (!webhooks) throw new NotFound("route");
    const raw = await readRaw(ctx, WEBHOOK_BODY_LIMIT);
    const outcome = await webhooks.handle(raw, ctx.get("stripe-signature") || undefined);
    ctx.body = { received: true, applied: outcome.applied };
  });
}

const planBody = z.object({ plan: z.string().min(1).max(32).nullable() }).strict();

const Plan = z.object({
  name: z.string(),
  includedMinutes: z.int().nullable().describe("compute minutes per period; null: unlimited"),
  maxRunning: z.int().nullable().describe("workspaces running at once; null: no plan limit"),
  boxSizes: z.array(z.string()).nullable().describe("server types allowed; null: any"),
  overage: z.enum(["billed", "stop"]).describe("past the included minutes: bill them, or stop"),
});

const Period = z.object({
  start: z.iso.datetime().describe("first instant of the calendar month (UTC)"),
  end: z.iso.datetime().describe("first instant of the next month"),
});

export const UsageReport = z.object({
  userId: z.string(),
  period: Period,
  plan: Plan,
  minutes: z.number().describe("compute minutes this period"),
  includedMinutes: z.int().nullable().describe("null: unlimited"),
  remainingMinutes: z.number().nullable().describe("null: unlimited"),
  projectedMinutes: z.number().describe("this period's minutes at its end if use goes on at the same rate"),
  workspaces: z.array(z.object({ workspaceId: z.string(), name: z.string(), minutes: z.number() })),
  days: z.array(z.object({ day: z.string().describe("YYYY-MM-DD, UTC"), minutes: z.number() })),
  subscriptionStatus: z.string().nullable().describe("Stripe's subscription status; null: none"),
});

const UsageAnswer = z.object({ usage: UsageReport });

export function usageRoutes(router: ApiRouter, deps: AppDeps): void {
  const { plans } = deps.billing;

  const usageDoc = doc({
    summary: "Your compute minutes this period against your plan, per workspace and per day",
    tag: "billing",
    responses: { 200: UsageAnswer },
  });
  router.get("/api/v1/usage", usageDoc, async (ctx) => {
    ctx.body = { usage: await usageReport(ctx.state.scope, plans) };
  });

  const workspaceUsageDoc = doc({
    summary: "A workspace's compute minutes this period",
    responses: {
      200: z.object({
        usage: z.object({ workspaceId: z.string(), period: Period, minutes: z.number() }),
      }),
    },
    errors: [404],
  });
  router.get("/api/v1/workspaces/:id/usage", workspaceUsageDoc, async (ctx) => {
    // Someone else's workspace is a 404 here like everywhere.
    const workspace = await ctx.state.scope.workspaces.get(ctx.params.id!);
    const report = await usageReport(ctx.state.scope, plans);
    const minutes = report.workspaces.find((w) => w.workspaceId === workspace.id)?.minutes ?? 0;
    ctx.body = { usage: { workspaceId: workspace.id, period: report.period, minutes } };
  });

  const adminUsageDoc = doc({
    summary: "Admins: a user's usage and plan",
    tag: "admin",
    responses: { 200: UsageAnswer },
    errors: [404],
  });
  router.get("/api/v1/admin/users/:id/usage", adminUsageDoc, async (ctx) => {
    const operator = deps.store.as(operatorFor(ctx.state.actor));
    ctx.body = { usage: await usageReport(operator, plans, ctx.params.id!) };
  });

  const planDoc = doc({
    summary: "Admins: set a user's plan (null: the default plan); answers their usage under it",
    tag: "admin",
    body: planBody,
    responses: { 200: UsageAnswer },
    errors: [404],
  });
  router.put("/api/v1/admin/users/:id/plan", planDoc, async (ctx) => {
    const operator = deps.store.as(operatorFor(ctx.state.actor));
    const { plan } = parseInput(planBody, ctx.request.body ?? {});
    if (plan !== null && !plans.has(plan)) {
      throw new Invalid(
        "unknown_plan",
        `body.plan: no plan named ${plan} (plans: ${plans.names.join(", ")})`,
        {
          field: "plan",
        },
      );
    }
    await operator.billing.setPlan(ctx.params.id!, plan);
    await operator.audit({
      action: "billing.plan",
      targetType: "user",
      targetId: ctx.params.id!,
      ip: ctx.ip,
      details: { plan },
    });
    ctx.body = { usage: await usageReport(operator, plans, ctx.params.id!) };
  });
}
