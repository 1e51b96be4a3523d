/**
 * The agent API (box/protocol.ts, v1): heartbeats carry lifecycle and return desired state; event batches
 * are applied exactly once. Authenticated by the per-instance agent token, not by a user: each request
 * acts as that instance's agent (`system:agent(<instance id>)`), which reaches its own workspace only.
 */

import { bodyParser } from "@koa/bodyparser";
import Router from "@koa/router";
import type { z } from "zod";
import {
  AGENT_API_PATHS,
  describeIssues,
  eventsRequest,
  heartbeatRequest,
  MAX_REQUEST_BYTES,
} from "../../../box/protocol.ts";
import { authenticateAgent } from "../../domain/agents/agent-token.ts";
import { applyAgentEvents } from "../../domain/agents/events.ts";
import { acceptHeartbeat } from "../../domain/agents/heartbeat.ts";
import { pgSafe } from "../../platform/pg-values.ts";
import type { AppDeps } from "../context.ts";
import { HttpError } from "../errors.ts";

/**
 * The agent's free text (pane output in notifications, command errors in log lines) may hold what Postgres
 * refuses; stored as is, it would fail the request with a 500, which the agent retries forever, so one such
 * event would block every later one. It is made storable instead.
 */
function parse<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const result = schema.safeParse(body);
  if (!result.success) throw new HttpError(400, "invalid_input", describeIssues(result.error));
  return pgSafe(result.data);
}

export function agentRouter(deps: AppDeps): Router {
  const router = new Router();
  router.use(bodyParser({ enableTypes: ["json"], jsonLimit: MAX_REQUEST_BYTES, encoding: "utf-8" }));

  router.post(AGENT_API_PATHS.heartbeat, async (ctx) => {
    const agent = await authenticateAgent(deps.store, ctx.get("authorization") || undefined);
    const hb = parse(heartbeatRequest, ctx.request.body);
    ctx.body = await acceptHeartbeat(agent, hb, {
      metrics: deps.metrics,
      tailnetClaims: deps.tailnetClaims,
      heartbeatIntervalSeconds: deps.agentHeartbeatSeconds,
      backups: deps.backups,
      diskWarnPercent: deps.config.diskWarnPercent,
    });
  });

  router.post(AGENT_API_PATHS.events, async (ctx) => {
    const agent = await authenticateAgent(deps.store, ctx.get("authorization") || undefined);
    const { events } = parse(eventsRequest, ctx.request.body);
    ctx.body = await applyAgentEvents(agent, deps.log, events, deps.backups, {
      toStdout: deps.config.logStore.agentLinesToStdout,
      exporter: deps.logExporter,
    });
  });

  return router;
}
