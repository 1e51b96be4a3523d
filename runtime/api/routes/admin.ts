import { z } from "zod";
import { formatStackDiff } from "../../../stacks/pulumi/diff.ts";
import {
  diffStack,
  forgetStack,
  listStacks,
  type OperatorDeps,
  repairStack,
} from "../../domain/operators/stacks.ts";
import { operatorFor } from "../../store/actors.ts";
import type { ApiRouter, AppContext, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";

const diffQuery = z.object({ transition: z.enum(["start", "stop"]).optional() });

export function adminRoutes(router: ApiRouter, deps: AppDeps): void {
  /**
   * The request as the operator, on the admin's behalf. For anyone else the authorization layer refuses
   * with 404: to them these routes do not exist, like someone else's resources.
   */
  const ops = (ctx: AppContext): OperatorDeps => ({
    scope: deps.store.as(operatorFor(ctx.state.actor)),
    driver: deps.driver,
    controlPlaneUrl: deps.publicUrl,
  });

  router.get("/api/v1/admin/stacks", async (ctx) => {
    ctx.body = { stacks: await listStacks(ops(ctx)) };
  });

  router.get("/api/v1/admin/workspaces/:id/diff", async (ctx) => {
    const operator = ops(ctx);
    const { transition } = parseInput(diffQuery, ctx.query, "query");
    const diff = await diffStack(operator, ctx.params.id!, transition);
    ctx.body = { diff, text: formatStackDiff(diff) };
  });

  router.post("/api/v1/admin/workspaces/:id/repair", async (ctx) => {
    ctx.body = await repairStack(ops(ctx), ctx.params.id!);
  });

  router.post("/api/v1/admin/workspaces/:id/forget", async (ctx) => {
    ctx.body = await forgetStack(ops(ctx), ctx.params.id!);
  });
}
