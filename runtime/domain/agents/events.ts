/**
 * Applies agent events exactly once (box/protocol.ts `planEventBatch`): inside one transaction that holds
 * the instance row lock, replays are acknowledged without effect and new events are stored in order.
 */
import { and, eq, isNull, sql } from "drizzle-orm";
import type { AgentEvent, EventsResponse } from "../../../box/protocol.ts";
import { planEventBatch } from "../../../box/protocol.ts";
import type { Logger } from "../../platform/logger.ts";
import type { Db } from "../../store/client.ts";
import { notifications, previews, sessions, workspaceInstances } from "../../store/schema.ts";
import type { AgentWorkspaceRow, InstanceRow } from "./agent-token.ts";

export const NOTIFICATION_CHANNEL = "berth_notification";

type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

export async function applyAgentEvents(
  db: Db,
  log: Logger,
  instance: InstanceRow,
  workspace: AgentWorkspaceRow,
  events: AgentEvent[],
): Promise<EventsResponse> {
  return db.transaction(async (tx) => {
    const [locked] = await tx
      .select({ ackedThrough: workspaceInstances.eventsAckedThrough })
      .from(workspaceInstances)
      .where(eq(workspaceInstances.id, instance.id))
      .for("update");
    const plan = planEventBatch(locked!.ackedThrough, events);
    for (const event of plan.toApply) await applyOne(tx, log, instance, workspace, event);
    if (plan.ackedThrough !== locked!.ackedThrough) {
      await tx
        .update(workspaceInstances)
        .set({ eventsAckedThrough: plan.ackedThrough })
        .where(eq(workspaceInstances.id, instance.id));
    }
    return { ackedThrough: plan.ackedThrough, replayed: plan.replayed };
  });
}

async function applyOne(
  tx: Tx,
  log: Logger,
  instance: InstanceRow,
  workspace: AgentWorkspaceRow,
  event: AgentEvent,
) {
  switch (event.type) {
    case "notification": {
      const p = event.payload;
      const [session] = p.session
        ? await tx
            .select({ id: sessions.id })
            .from(sessions)
            .where(
              and(
                eq(sessions.workspaceId, workspace.id),
                eq(sessions.name, p.session),
                isNull(sessions.closedAt),
              ),
            )
        : [];
      const inserted = await tx
        .insert(notifications)
        .values({
          userId: workspace.ownerId,
          workspaceId: workspace.id,
          sessionId: session?.id ?? null,
          kind: p.kind,
          title: p.title,
          body: p.message,
          dedupeKey: p.dedupeKey,
          createdAt: new Date(event.at),
        })
        .onConflictDoNothing({ target: [notifications.workspaceId, notifications.dedupeKey] })
        .returning({ id: notifications.id });
      // Payload `<user id>:<notification id>`: followers filter by user and fetch exactly the new row.
      if (inserted[0]) {
        await tx.execute(
          sql`SELECT pg_notify(${NOTIFICATION_CHANNEL}, ${`${workspace.ownerId}:${inserted[0].id}`})`,
        );
      }
      return;
    }
    case "preview": {
      const p = event.payload;
      const open = and(
        eq(previews.workspaceId, workspace.id),
        eq(previews.port, p.port),
        isNull(previews.closedAt),
      );
      if (p.state === "open") {
        const [existing] = await tx.select().from(previews).where(open);
        if (existing) {
          await tx
            .update(previews)
            .set({ process: p.process, framework: p.framework })
            .where(eq(previews.id, existing.id));
        } else {
          await tx.insert(previews).values({
            workspaceId: workspace.id,
            port: p.port,
            source: "detected",
            process: p.process,
            framework: p.framework,
          });
        }
      } else {
        // A declared preview outlives its process: the user asked for it, and the server may come back.
        await tx
          .update(previews)
          .set({ closedAt: new Date(event.at) })
          .where(and(open, eq(previews.source, "detected")));
      }
      return;
    }
    case "log": {
      const { level, msg, fields } = event.payload;
      log[level](
        { ...fields, source: "agent", workspaceId: workspace.id, instanceId: instance.id, agentAt: event.at },
        msg,
      );
      return;
    }
    case "lifecycle":
      log.info({ workspaceId: workspace.id, instanceId: instance.id, ...event.payload }, "agent lifecycle");
      return;
  }
}
