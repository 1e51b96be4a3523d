/**
 * Applies agent events exactly once (box/protocol.ts `planEventBatch`): inside one transaction that holds
 * the instance's event cursor, replays are acknowledged without effect and new events are stored in order.
 * Everything goes through the agent's own scope: it reaches its workspace's sessions, previews and owner,
 * and nothing else.
 */
import type { AgentEvent, EventsResponse, NotificationPayload } from "../../../box/protocol.ts";
import { planEventBatch } from "../../../box/protocol.ts";
import type { LogExporter, LogLine } from "../../platform/log-line.ts";
import type { Logger } from "../../platform/logger.ts";
import { currentTraceIds } from "../../platform/tracing.ts";
import type { AuthorizedStore } from "../../store/store.ts";
import type { BackupService } from "../backups/service.ts";
import type { AuthenticatedAgent } from "./agent-token.ts";

/** Where the agent's shipped log lines go besides the log store. */
export interface AgentLogOptions {
  /** Also print them on the control plane's stdout (BERTH_AGENT_LOG_STDOUT, for debugging). */
  toStdout?: boolean;
  exporter?: LogExporter | null;
}

export async function applyAgentEvents(
  agent: AuthenticatedAgent,
  log: Logger,
  events: AgentEvent[],
  backups?: BackupService,
  logs: AgentLogOptions = {},
): Promise<EventsResponse> {
  const lines: LogLine[] = [];
  let stored: LogLine[] = [];
  const result = await agent.scope.transaction(async (tx) => {
    const ackedThrough = await tx.agents.lockEventCursor();
    const plan = planEventBatch(ackedThrough, events);
    for (const event of plan.toApply) {
      if (event.type === "log") lines.push(agentLogLine(agent, event));
      else await applyOne(tx, log, agent, event, backups);
    }
    // One statement for the batch's lines, committed with the cursor: stored exactly once.
    stored = await tx.logs.append(lines);
    if (plan.ackedThrough !== ackedThrough) await tx.agents.advanceEventCursor(plan.ackedThrough);
    return { ackedThrough: plan.ackedThrough, replayed: plan.replayed };
  });
  if (logs.toStdout)
    for (const line of stored)
      log[line.level](
        { ...line.fields, source: "agent", workspaceId: line.workspaceId, agentAt: line.time },
        line.message,
      );
  if (logs.exporter && stored.length)
    logs.exporter
      .export(stored)
      .catch((err: Error) => log.warn({ err: err.message }, "shipping agent log lines failed"));
  return result;
}

/**
 * An event's time by the box's clock, taken as now when it is ahead of ours (and as 1970 when before it,
 * which Postgres could not store if before the year 1). A box clock that runs ahead would otherwise date
 * activity in the future, holding off idle autostop, and once set right its correct, earlier times would be
 * ignored as older than the state they follow (sessions.setClaudeState). The log store keeps a line's own
 * time (store/logs.ts clamps it itself), so log events do not pass through here.
 */
export function agentTime(at: string, now = Date.now()): Date {
  return new Date(Math.max(0, Math.min(Date.parse(at), now)));
}

/** A shipped agent line as the log store keeps it, in the trace of the agent's request. */
function agentLogLine(agent: AuthenticatedAgent, event: Extract<AgentEvent, { type: "log" }>): LogLine {
  const { level, msg, fields } = event.payload;
  return {
    time: new Date(event.at),
    workspaceId: agent.workspace.id,
    instanceId: agent.instance.id,
    source: "agent",
    level,
    message: msg,
    fields,
    traceId: currentTraceIds()?.traceId ?? null,
  };
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
        createdAt: agentTime(event.at),
        push: worthAPush(p),
      });
      return;
    }
    case "preview": {
      const p = event.payload;
      if (p.state === "open")
        await tx.previews.detected(p.port, { process: p.process, framework: p.framework });
      else await tx.previews.closeDetected(p.port, agentTime(event.at));
      return;
    }
    case "log":
      return; // collected by applyAgentEvents into one insert
    case "lifecycle":
      log.info({ workspaceId: workspace.id, instanceId: instance.id, ...event.payload }, "agent lifecycle");
      return;
    case "claude_state": {
      const p = event.payload;
      await tx.sessions.setClaudeState(p.session, p.state, p.detail, agentTime(event.at));
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
