/**
 * The agent API (box/protocol.ts, v1): heartbeats carry lifecycle and return desired state; event batches
 * are applied exactly once. Authenticated by the per-instance agent token, not by a user.
 */

import { bodyParser } from "@koa/bodyparser";
import Router from "@koa/router";
import { and, asc, eq, inArray, isNull } from "drizzle-orm";
import type { z } from "zod";
import {
  AGENT_API_PATHS,
  describeIssues,
  eventsRequest,
  type HeartbeatResponseInput,
  heartbeatRequest,
  MAX_REQUEST_BYTES,
} from "../../../box/protocol.ts";
import { authenticateAgent } from "../../domain/agents/agent-token.ts";
import { applyAgentEvents } from "../../domain/agents/events.ts";
import { markAgentReady } from "../../domain/agents/readiness.ts";
import { isUuid } from "../../platform/ids.ts";
import { agentActions, sessions, workspaceInstances } from "../../store/schema.ts";
import type { AppDeps } from "../context.ts";
import { HttpError } from "../errors.ts";

function parse<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const result = schema.safeParse(body);
  if (!result.success) throw new HttpError(400, "invalid_input", describeIssues(result.error));
  return result.data;
}

export function agentRouter(deps: AppDeps): Router {
  const { db } = deps.database;
  const router = new Router();
  router.use(bodyParser({ enableTypes: ["json"], jsonLimit: MAX_REQUEST_BYTES, encoding: "utf-8" }));

  router.post(AGENT_API_PATHS.heartbeat, async (ctx) => {
    const { instance, workspace } = await authenticateAgent(db, ctx.get("authorization") || undefined);
    const hb = parse(heartbeatRequest, ctx.request.body);
    await db
      .update(workspaceInstances)
      .set({
        agentLifecycle: hb.lifecycle,
        agentVersion: hb.agentVersion,
        agentLastError: hb.lastError,
        lastHeartbeatAt: new Date(),
      })
      .where(eq(workspaceInstances.id, instance.id));
    // Never stored as claimed: the box must prove the address first (tailnet-claims.ts).
    if (hb.tailnetIp && hb.tailnetIp !== instance.tailnetIp) {
      deps.tailnetClaims.consider(
        { id: instance.id, workspaceId: workspace.id, terminalPort: instance.terminalPort },
        hb.tailnetIp,
      );
    }
    if (hb.lifecycle === "ready") await markAgentReady(db, deps.metrics, instance.id);

    const completedIds = hb.completed.map((c) => c.id);
    if (completedIds.length > 0) {
      for (const c of hb.completed) {
        await db
          .update(agentActions)
          .set({ completedAt: new Date(c.at), ok: c.ok, error: c.error ?? null })
          .where(
            and(
              eq(agentActions.id, c.id),
              eq(agentActions.workspaceId, workspace.id),
              isNull(agentActions.completedAt),
            ),
          );
      }
    }
    const keep = await db
      .select({ name: sessions.name })
      .from(sessions)
      .where(and(eq(sessions.workspaceId, workspace.id), isNull(sessions.closedAt)))
      .orderBy(asc(sessions.createdAt));
    const pending = await db
      .select()
      .from(agentActions)
      .where(and(eq(agentActions.workspaceId, workspace.id), isNull(agentActions.completedAt)))
      .orderBy(asc(agentActions.createdAt))
      .limit(100);
    // Acknowledge what we recognise; ids that are not ours are acknowledged too, so the agent stops resending.
    const ours = completedIds.filter((id) => isUuid(id));
    const known = ours.length
      ? await db
          .select({ id: agentActions.id })
          .from(agentActions)
          .where(and(inArray(agentActions.id, ours), eq(agentActions.workspaceId, workspace.id)))
      : [];
    const foreign = completedIds.filter((id) => !isUuid(id));
    const backup = pending.find((a) => a.kind === "backup");
    const response: HeartbeatResponseInput = {
      sessions: keep.map((s) => s.name),
      backup: backup ? { id: backup.id } : null,
      sendKeys: pending
        .filter((a) => a.kind === "keys")
        .map((a) => ({ id: a.id, ...(a.payload as { session: string; keys: string }) })),
      acks: { completed: [...known.map((k) => k.id), ...foreign] },
      eventsAckedThrough: instance.eventsAckedThrough,
      heartbeatIntervalSeconds: deps.agentHeartbeatSeconds,
    };
    ctx.body = response;
  });

  router.post(AGENT_API_PATHS.events, async (ctx) => {
    const { instance, workspace } = await authenticateAgent(db, ctx.get("authorization") || undefined);
    const { events } = parse(eventsRequest, ctx.request.body);
    ctx.body = await applyAgentEvents(db, deps.log, instance, workspace, events);
  });

  return router;
}
