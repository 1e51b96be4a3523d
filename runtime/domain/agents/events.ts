/**
 * Applies agent events exactly once (box/protocol.ts `planEventBatch`): inside one transaction that holds
 * the instance's event cursor, replays are acknowledged without effect and new events are stored in order.
 * Everything goes through the agent's own scope: it reaches its workspace's sessions, previews and owner,
 * and nothing else.
 */
import type { AgentEvent, EventsResponse, NotificationPayload } from "../../../box/protocol.ts";
import { planEventBatch } from "../../../box/protocol.ts";
import type { Logger } from "../../platform/logger.ts";
import type { AuthorizedStore } from "../../store/store.ts";
import type { BackupService } from "../backups/service.ts";
import type { AuthenticatedAgent } from "./agent-token.ts";

export async function applyAgentEvents(
  agent: AuthenticatedAgent,
  log: Logger,
  events: AgentEvent[],
  backups?: BackupService,
): Promise<EventsResponse> {
  return agent.scope.transaction(async (tx) => {
    const ackedThrough = await tx.agents.lockEventCursor();
    const plan = planEventBatch(ackedThrough, events);
    for (const event of plan.toApply) await applyOne(tx, log, agent, event, backups);
    if (plan.ackedThrough !== ackedThrough) await tx.agents.advanceEventCursor(plan.ackedThrough);
    return { ackedThrough: plan.ackedThrough, replayed: plan.replayed };
  });
}

async function applyOne(
  tx: AuthorizedStore,
  log: Logger,
  agent: AuthenticatedAgent,
  event: AgentEvent,
  backups?: BackupService,
) {
  const { instance, workspace } = agent;
  switch (event.type) {
    case "notification": {
      const p = event.payload;
      const sessionId = p.session ? await tx.sessions.findOpenByName(workspace.id, p.session) : null;
      await tx.notifications.createForOwner({
        sessionId,
        kind: p.kind,
        title: p.title,
        body: p.message,
        dedupeKey: p.dedupeKey,
        createdAt: new Date(event.at),
        push: worthAPush(p),
      });
      return;
    }
    case "preview": {
      const p = event.payload;
      if (p.state === "open")
        await tx.previews.detected(p.port, { process: p.process, framework: p.framework });
      else await tx.previews.closeDetected(p.port, new Date(event.at));
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
    case "claude_state": {
      const p = event.payload;
      await tx.sessions.setClaudeState(p.session, p.state, p.detail, new Date(event.at));
      return;
    }
    case "backup": {
      const p = event.payload;
      const reported = await tx.backups.report(p);
      if (!reported?.finished) return;
      if (p.operation === "restore") await backups?.restoreFinished(tx, workspace.id, p);
      else await backups?.finished(tx, reported.row);
      return;
    }
  }
}

/** Claude finished a turn it worked on at least this long: worth a push (short turns the user watched). */
export const PUSH_FINISHED_AFTER_SECONDS = 60;

/** Which agent notifications go out as Web Push: Claude needs you, errored, or finished a long turn. */
export function worthAPush(p: NotificationPayload): boolean {
  switch (p.kind) {
    case "permission_prompt":
    case "elicitation_dialog":
    case "idle_prompt":
    case "stop_failure":
      return true;
    case "stop":
      return (p.workedSeconds ?? 0) >= PUSH_FINISHED_AFTER_SECONDS;
    default:
      return false;
  }
}
