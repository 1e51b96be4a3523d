import { z } from "zod";
import { MAX_ONBOARD_TEXT, projectName } from "../../../box/protocol.ts";
import { draftFrom, type InterviewAnswers } from "../../domain/onboarding/interview.ts";
import { onboardingStatus, requestOnboarding } from "../../domain/onboarding/service.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";
import { doc, timestamp } from "../openapi/doc.ts";

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

const draftBody = z.object({ answers }).strict();

/** The drafts for review, as generated from the answers (interview.ts `OnboardingDraft`). */
export const OnboardingDraft = z.object({
  claudeMd: z.string().describe("the project's CLAUDE.md; imports the generated brief"),
  generated: z.string().describe("the generated brief, .claude/berth-generated.md"),
  permissions: z
    .object({ allow: z.array(z.string()), deny: z.array(z.string()) })
    .describe("the permission profile for .claude/settings.json"),
  personal: z
    .string()
    .nullable()
    .describe("the personal preferences ~/.claude/CLAUDE.md imports; null: none"),
});

/** An onboarding request and what the workspace's agent reported (service.ts `OnboardingStatus`). */
export const Onboarding = z.object({
  id: z.string(),
  project: z.string(),
  state: z.enum(["pending", "done", "failed"]),
  error: z.string().nullable().describe("why it failed"),
  createdAt: timestamp,
  completedAt: timestamp.nullable(),
});

/**
 * The onboarding interview: answers → drafts for review (`/draft`), then the reviewed drafts → an action
 * the workspace's agent applies on the volume (202, then poll its state).
 */
export function onboardingRoutes(router: ApiRouter, deps: AppDeps): void {
  const draftDoc = doc({
    summary: "Draft the onboarding files from the interview's answers, for review",
    body: draftBody,
    responses: { 200: z.object({ draft: OnboardingDraft }) },
    errors: [404],
  });
  router.post("/api/v1/workspaces/:id/onboarding/draft", draftDoc, async (ctx) => {
    const input = parseInput(draftBody, ctx.request.body ?? {});
    await ctx.state.scope.workspaces.get(ctx.params.id!); // someone else's workspace: 404 like the rest
    ctx.body = { draft: draftFrom(input.answers as InterviewAnswers) };
  });

  const one = z.object({ onboarding: Onboarding });
  const applyDoc = doc({
    summary: "Onboard a project: the workspace's agent applies the reviewed drafts (poll its state)",
    body: applyBody,
    responses: { 202: one },
    errors: [404],
  });
  router.post("/api/v1/workspaces/:id/onboarding", applyDoc, async (ctx) => {
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

  const statusDoc = doc({
    summary: "Read an onboarding request's state",
    responses: { 200: one },
    errors: [404],
  });
  router.get("/api/v1/workspaces/:id/onboarding/:onboardingId", statusDoc, async (ctx) => {
    ctx.body = {
      onboarding: await onboardingStatus(ctx.state.scope, ctx.params.id!, ctx.params.onboardingId!),
    };
  });
}
