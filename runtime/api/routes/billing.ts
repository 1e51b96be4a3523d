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

/** The webhook path: the JSON body parser leaves it alone (app/http-app.ts). */
export const STRIPE_WEBHOOK_PATH = "/api/v1/billing/webhooks";
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

export function stripeWebhookRoutes(router: ApiRouter, deps: AppDeps): void {
  router.post(STRIPE_WEBHOOK_PATH, async (ctx) => {
    const webhooks = deps.billing.webhooks;
    // Without a signing secret nothing could be verified: the endpoint does not exist.
    if (!webhooks) throw new NotFound("route");
    const raw = await readRaw(ctx, WEBHOOK_BODY_LIMIT);
    const outcome = await webhooks.handle(raw, ctx.get("stripe-signature") || undefined);
    ctx.body = { received: true, applied: outcome.applied };
  });
}

const planBody = z.object({ plan: z.string().min(1).max(32).nullable() }).strict();

export function usageRoutes(router: ApiRouter, deps: AppDeps): void {
  const { plans } = deps.billing;

  router.get("/api/v1/usage", async (ctx) => {
    ctx.body = { usage: await usageReport(ctx.state.scope, plans) };
  });

  router.get("/api/v1/workspaces/:id/usage", async (ctx) => {
    // Someone else's workspace is a 404 here like everywhere.
    const workspace = await ctx.state.scope.workspaces.get(ctx.params.id!);
    const report = await usageReport(ctx.state.scope, plans);
    const minutes = report.workspaces.find((w) => w.workspaceId === workspace.id)?.minutes ?? 0;
    ctx.body = { usage: { workspaceId: workspace.id, period: report.period, minutes } };
  });

  router.get("/api/v1/admin/users/:id/usage", async (ctx) => {
    const operator = deps.store.as(operatorFor(ctx.state.actor));
    ctx.body = { usage: await usageReport(operator, plans, ctx.params.id!) };
  });

  router.put("/api/v1/admin/users/:id/plan", async (ctx) => {
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
