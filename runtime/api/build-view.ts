import { redactAddresses } from "../platform/redact.ts";
import type { BuildRow } from "../store/rows.ts";

/** The client-facing shape of a build. Driver errors are redacted: they may quote box addresses. */
export function presentBuild(b: BuildRow) {
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
