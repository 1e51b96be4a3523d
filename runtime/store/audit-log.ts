import { currentRequestId } from "../platform/request-context.ts";
import type { Db } from "./client.ts";
import { auditLog } from "./schema.ts";

export type AuditActor =
  | { kind: "user"; userId: string }
  | { kind: "operator"; userId: string | null }
  | { kind: "system" }
  | { kind: "agent" };

export interface AuditEntry {
  actor: AuditActor;
  /** Verb in `resource.action` form, e.g. `workspace.create`, `session.open`, `admin.forget`. */
  action: string;
  targetType: string;
  targetId?: string | null;
  ip?: string | null;
  /** Never put secrets here: the audit log is read by operators. */
  details?: Record<string, unknown>;
}

/**
 * Writes one audit row. Pass the transaction that makes the change, so the record and the change commit
 * or roll back together.
 */
export async function writeAudit(db: Pick<Db, "insert">, entry: AuditEntry): Promise<void> {
  await db.insert(auditLog).values({
    actorId: "userId" in entry.actor ? entry.actor.userId : null,
    actorKind: entry.actor.kind,
    action: entry.action,
    targetType: entry.targetType,
    targetId: entry.targetId ?? null,
    requestId: currentRequestId() ?? null,
    ip: entry.ip ?? null,
    details: entry.details ?? {},
  });
}
