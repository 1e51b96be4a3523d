/**
 * A box agent's heartbeat (box/protocol.ts): it reports lifecycle, version, its tailnet address and the
 * actions it finished; the answer is the desired state (sessions to keep, a backup to run, keys to type)
 * and the acknowledgements. All through the agent's own scope.
 */
import type { HeartbeatRequest, HeartbeatResponseInput, OnboardAction } from "../../../box/protocol.ts";
import { isUuid } from "../../platform/ids.ts";
import type { Metrics } from "../../platform/metrics.ts";
import type { BackupService } from "../backups/service.ts";
import { recordTelemetry } from "../telemetry/record.ts";
import type { AuthenticatedAgent } from "./agent-token.ts";
import { agentTime } from "./events.ts";
import { markAgentReady } from "./readiness.ts";
import type { TailnetClaims } from "./tailnet-claims.ts";

/** Actions handed out per heartbeat. */
const MAX_PENDING_ACTIONS = 100;

export async function acceptHeartbeat(
  agent: AuthenticatedAgent,
  hb: HeartbeatRequest,
  deps: {
    metrics: Metrics;
    tailnetClaims: TailnetClaims;
    heartbeatIntervalSeconds: number;
    backups?: BackupService;
    /** The disk-nearly-full threshold (percent); the heartbeat's load, memory and disk are stored. */
    diskWarnPercent: number;
  },
): Promise<HeartbeatResponseInput> {
  const { scope, instance, workspace } = agent;
  await scope.agents.recordHeartbeat({
    lifecycle: hb.lifecycle,
    agentVersion: hb.agentVersion,
    lastError: hb.lastError,
  });
  await recordTelemetry(scope, hb.metrics, { diskWarnPercent: deps.diskWarnPercent });
  // Never stored as claimed: the box must prove the address first (tailnet-claims.ts).
  if (hb.tailnetIp && hb.tailnetIp !== instance.tailnetIp) {
    deps.tailnetClaims.consider(
      { id: instance.id, workspaceId: workspace.id, terminalPort: instance.terminalPort },
      hb.tailnetIp,
    );
  }
  if (hb.lifecycle === "ready") await markAgentReady(scope, deps.metrics);

  const completedIds = hb.completed.map((c) => c.id);
  await scope.agents.completeActions(
    hb.completed.map((c) => ({ id: c.id, at: agentTime(c.at), ok: c.ok, error: c.error ?? null })),
  );
  // A backup or restore the box could not run at all fails its run (the box's own report may never come).
  const failedRuns = hb.completed.filter((c) => !c.ok && (c.kind === "backup" || c.kind === "restore"));
  if (failedRuns.length) {
    for (const row of await scope.backups.failRunsOfActions(
      failedRuns.map((c) => ({ id: c.id, error: c.error ?? null })),
    ))
      await deps.backups?.finished(scope, row);
  }
  const keep = await scope.sessions.listOf(workspace.id);
  const pending = await scope.agents.pendingActions(MAX_PENDING_ACTIONS);
  // Acknowledge what we recognise; ids that cannot be ours (not UUIDs) are acknowledged too, so the agent
  // stops resending them.
  const known = await scope.agents.ownActionIds(completedIds);
  const foreign = completedIds.filter((id) => !isUuid(id));
  const backup = pending.find((a) => a.kind === "backup");
  const restore = pending.find((a) => a.kind === "restore");
  // The user's secrets go to the agent (which keeps them in memory only) whenever the set differs from the
  // version it holds, so a change reaches the next session it creates without a rebuild.
  const environmentVersion = await scope.userSecrets.versionForAgent();
  const environment =
    hb.environmentVersion === environmentVersion ? undefined : await scope.userSecrets.forAgent();
  return {
    sessions: keep.map((s) => s.name),
    guided: keep
      .filter((s) => s.mode === "guided" && s.task)
      .map((s) => ({ session: s.name, project: s.project, task: s.task! })),
    ...(environment ? { environment, environmentVersion } : {}),
    onboard: pending
      .filter((a) => a.kind === "onboard")
      .slice(0, 10)
      .map((a) => ({ ...(a.payload as Omit<OnboardAction, "id">), id: a.id })),
    backup: backup ? { ...backup.payload, id: backup.id } : null,
    restore: restore ? ({ ...restore.payload, id: restore.id } as HeartbeatResponseInput["restore"]) : null,
    sendKeys: pending
      .filter((a) => a.kind === "keys")
      .map((a) => ({ id: a.id, ...(a.payload as { session: string; keys: string }) })),
    acks: { completed: [...known, ...foreign] },
    eventsAckedThrough: instance.eventsAckedThrough,
    heartbeatIntervalSeconds: deps.heartbeatIntervalSeconds,
  };
}
