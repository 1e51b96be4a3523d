import type { Next } from "koa";
import { z } from "zod";
import { formatStackDiff } from "../../../stacks/pulumi/diff.ts";
import {
  diffStack,
  forgetStack,
  listStacks,
  type OperatorDeps,
  repairStack,
} from "../../domain/operators/stacks.ts";
import { NotFound } from "../../platform/errors.ts";
import type { ApiRouter, AppContext, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";

/** Operators only. To anyone else these routes do not exist (404), like someone else's resources. */
async function requireAdmin(ctx: AppContext, next: Next) {
  if (!ctx.state.actor.isAdmin) throw new NotFound("resource");
  await next();
}

const diffQuery = z.object({ transition: z.enum(["start", "stop"]).optional() });

export function adminRoutes(router: ApiRouter, deps: AppDeps): void {
  const ops = (): OperatorDeps => ({
    database: deps.database,
    driver: deps.driver,
    secretBox: deps.secretBox,
    controlPlaneUrl: deps.publicUrl,
  });

  router.get("/api/v1/admin/stacks", requireAdmin, async (ctx) => {
    ctx.body = { stacks: await listStacks(ops()) };
  });

  router.get("/api/v1/admin/workspaces/:id/diff", requireAdmin, async (ctx) => {
    const { transition } = parseInput(diffQuery, ctx.query, "query");
    const diff = await diffStack(ops(), ctx.params.id!, transition);
    ctx.body = { diff, text: formatStackDiff(diff) };
  });

  router.post("/api/v1/admin/workspaces/:id/repair", requireAdmin, async (ctx) => {
    ctx.body = await repairStack(ops(), ctx.params.id!, ctx.state.actor.userId);
  });

  router.post("/api/v1/admin/workspaces/:id/forget", requireAdmin, async (ctx) => {
    ctx.body = await forgetStack(ops(), ctx.params.id!, ctx.state.actor.userId);
  });
}
