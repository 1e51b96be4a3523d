import { z } from "zod";
import { redactAddresses } from "../platform/redact.ts";
import type { BuildRow } from "../store/rows.ts";
import { BUILD_REASONS, BUILD_STATUSES, BUILD_TRANSITIONS } from "../store/rows.ts";
import { timestamp } from "./openapi/doc.ts";

/** A build as clients see it: the one change a workspace is going through (or went through). */
export const Build = z.object({
  id: z.string(),
  workspaceId: z.string(),
  number: z.number().int(),
  transition: z.enum(BUILD_TRANSITIONS),
  reason: z.enum(BUILD_REASONS),
  status: z.enum(BUILD_STATUSES),
  attempt: z.number().int(),
  error: z.string().nullable(),
  cancelRequested: z.boolean(),
  createdAt: timestamp,
  startedAt: timestamp.nullable(),
  finishedAt: timestamp.nullable(),
});

/** The client-facing shape of a build. Driver errors are redacted: they may quote box addresses. */
export function presentBuild(b: BuildRow): z.input<typeof Build> {
  return {
    id: b.id,
    workspaceId: b.workspaceId,
    number: b.number,
    transition: b.transition,
    reason: b.reason,
    status: b.status,
    attempt: b.attempt,
    error: b.error === null ? null : redactAddresses(b.error),
    cancelRequested: b.cancelRequestedAt !== null,
    createdAt: b.createdAt,
    startedAt: b.startedAt,
    finishedAt: b.finishedAt,
  };
}
