import { currentRequestId } from "../platform/request-context.ts";
import { type Actor, actorName } from "./actors.ts";
import type { Executor } from "./client.ts";
import { auditLog } from "./schema.ts";

export interface AuditEntry {
  actor: Actor;
  /** Verb in `resource.action` form, e.g. `workspace.create`, `session.open`, `admin.forget`. */
  action: string;
  targetType: string;
  targetId?: string | null;
  ip?: string | null;
  /** Never put secrets here: the audit log is read by operators. */
  details?: Record<string, unknown>;
}

/** The audit log's columns for an actor: its kind, the person behind it if any, and its name. */
export function auditActor(actor: Actor): {
  actorKind: "user" | "system" | "agent" | "operator";
  actorId: string | null;
  name: string;
} {
  const name = actorName(actor);
  switch (actor.kind) {
    case "user":
      return { actorKind: "user", actorId: actor.userId, name };
    case "agent":
      return { actorKind: "agent", actorId: null, name };
    case "system":
      return actor.role === "operator"
        ? { actorKind: "operator", actorId: actor.onBehalfOf, name }
        : { actorKind: "system", actorId: null, name };
  }
}

/**
 * Writes one audit row. Pass the transaction that makes the change, so the record and the change commit
 * or roll back together. System and agent actors are named in `details.actor` (`system:reconciler`).
 */
export async function writeAudit(db: Pick<Executor, "insert">, entry: AuditEntry): Promise<void> {
  const { actorKind, actorId, name } = auditActor(entry.actor);
  await db.insert(auditLog).values({
    actorId,
    actorKind,
    action: entry.action,
    targetType: entry.targetType,
    targetId: entry.targetId ?? null,
    requestId: currentRequestId() ?? null,
    ip: entry.ip ?? null,
    details: actorKind === "user" ? (entry.details ?? {}) : { ...entry.details, actor: name },
  });
}
