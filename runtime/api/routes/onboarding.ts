import { z } from "zod";
import { MAX_ONBOARD_TEXT, projectName } from "../../../box/protocol.ts";
import { draftFrom, type InterviewAnswers } from "../../domain/onboarding/interview.ts";
import { onboardingStatus, requestOnboarding } from "../../domain/onboarding/service.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";

/** A command that lands inside a permission rule `Bash(<command>:*)`: one line, no parentheses. */
const command = z
  .string()
  .max(300)
  .regex(/^[^()\n\r]*$/, "must be one line without parentheses")
  .optional();

const answers = z
  .object({
    project: z
      .object({
        name: projectName,
        source: z.enum(["new", "existing", "git"]),
        url: z.string().max(2048).optional(),
      })
      .strict(),
    goal: z.string().trim().min(1, "say what to build").max(4000),
    stack: z.string().max(1000).default(""),
    runCommand: command,
    testCommand: command,
    conventions: z.string().max(4000).optional(),
    permissions: z
      .object({
        edit: z.boolean().default(true),
        commands: z.enum(["ask", "project", "any"]).default("project"),
        git: z.enum(["ask", "commit", "push"]).default("commit"),
        web: z.boolean().default(false),
      })
      .strict()
      .default({ edit: true, commands: "project", git: "commit", web: false }),
    personal: z.string().max(4000).optional(),
  })
  .strict();

const rule = z.string().min(1).max(400);
const draft = z
  .object({
    claudeMd: z.string().max(MAX_ONBOARD_TEXT),
    generated: z.string().max(MAX_ONBOARD_TEXT),
    permissions: z.object({ allow: z.array(rule).max(200), deny: z.array(rule).max(200) }).strict(),
    personal: z.string().max(MAX_ONBOARD_TEXT).nullable(),
  })
  .strict();

const applyBody = z
  .object({
    answers,
    /** The drafts as the user reviewed and edited them; absent: generated from the answers as they are. */
    draft: draft.optional(),
    trust: z.boolean().default(true),
  })
  .strict();

/**
 * The onboarding interview: answers → drafts for review (`/draft`), then the reviewed drafts → an action
 * the workspace's agent applies on the volume (202, then poll its state).
 */
export function onboardingRoutes(router: ApiRouter, deps: AppDeps): void {
  router.post("/api/v1/workspaces/:id/onboarding/draft", async (ctx) => {
    const input = parseInput(z.object({ answers }).strict(), ctx.request.body ?? {});
    await ctx.state.scope.workspaces.get(ctx.params.id!); // someone else's workspace: 404 like the rest
    ctx.body = { draft: draftFrom(input.answers as InterviewAnswers) };
  });

  router.post("/api/v1/workspaces/:id/onboarding", async (ctx) => {
    const input = parseInput(applyBody, ctx.request.body ?? {});
    const a = input.answers as InterviewAnswers;
    const status = await requestOnboarding(ctx.state.scope, ctx.params.id!, a, input.draft ?? draftFrom(a), {
      allowLocal: deps.config.driver === "local",
      trust: input.trust,
      ip: ctx.ip,
    });
    ctx.status = 202;
    ctx.body = { onboarding: status };
  });

  router.get("/api/v1/workspaces/:id/onboarding/:onboardingId", async (ctx) => {
    ctx.body = {
      onboarding: await onboardingStatus(ctx.state.scope, ctx.params.id!, ctx.params.onboardingId!),
    };
  });
}
