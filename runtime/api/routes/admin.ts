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
import { doc } from "../openapi/doc.ts";

const diffQuery = z.object({ transition: z.enum(["start", "stop"]).optional() });

const StackDiff = z.object({
  workspaceId: z.string(),
  changes: z.array(
    z.object({
      resource: z.string(),
      type: z.string(),
      op: z.enum(["create", "update", "replace", "delete", "same"]),
      changedKeys: z.array(z.string()),
    }),
  ),
});
const admin = "admin";

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

  const listDoc = doc({
    summary: "Admins: every workspace record next to what the driver observes",
    tag: admin,
    responses: {
      200: z.object({
        stacks: z.array(
          z.object({
            workspaceId: z.string(),
            ownerId: z.string().nullable(),
            state: z.string().nullable(),
            observed: z.enum(["running", "stopped", "absent"]),
            drift: z.string().nullable(),
          }),
        ),
      }),
    },
    errors: [404],
  });
  router.get("/api/v1/admin/stacks", listDoc, async (ctx) => {
    ctx.body = { stacks: await listStacks(ops(ctx)) };
  });

  const diffDoc = doc({
    summary: "Admins: what a start or stop build would change",
    tag: admin,
    query: diffQuery,
    responses: { 200: z.object({ diff: StackDiff, text: z.string() }) },
    errors: [404, 409, 502],
  });
  router.get("/api/v1/admin/workspaces/:id/diff", diffDoc, async (ctx) => {
    const operator = ops(ctx);
    const { transition } = parseInput(diffQuery, ctx.query, "query");
    const diff = await diffStack(operator, ctx.params.id!, transition);
    ctx.body = { diff, text: formatStackDiff(diff) };
  });

  const repairDoc = doc({
    summary: "Admins: clear a stale lock and refresh the stack",
    tag: admin,
    responses: { 200: z.object({ state: z.string() }) },
    errors: [404, 409, 502],
  });
  router.post("/api/v1/admin/workspaces/:id/repair", repairDoc, async (ctx) => {
    ctx.body = await repairStack(ops(ctx), ctx.params.id!);
  });

  const forgetDoc = doc({
    summary: "Admins: drop the record without touching the cloud",
    tag: admin,
    responses: { 200: z.object({ leaked: z.array(z.string()) }) },
    errors: [404, 409],
  });
  router.post("/api/v1/admin/workspaces/:id/forget", forgetDoc, async (ctx) => {
    ctx.body = await forgetStack(ops(ctx), ctx.params.id!);
  });
}
