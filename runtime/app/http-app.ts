/** Assembles the Koa application: cross-cutting middleware first, then the public and the signed-in routers. */
import { randomUUID } from "node:crypto";
import { bodyParser } from "@koa/bodyparser";
import Router from "@koa/router";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import Koa from "koa";
import helmet from "koa-helmet";
import type { AppDeps, AppState } from "../api/context.ts";
import { errorMiddleware } from "../api/errors.ts";
import { adminRoutes } from "../api/routes/admin.ts";
import { agentRouter } from "../api/routes/agent.ts";
import { apiTokenRoutes } from "../api/routes/api-tokens.ts";
import { authConfigRoutes, loginRoutes, meRoutes } from "../api/routes/auth.ts";
import { backupRoutes } from "../api/routes/backups.ts";
import { isStripeWebhookPath, stripeWebhookRoutes, usageRoutes } from "../api/routes/billing.ts";
import { buildRoutes } from "../api/routes/builds.ts";
import { healthRoutes } from "../api/routes/health.ts";
import { loginPageRoutes } from "../api/routes/login-page.ts";
import { logRoutes } from "../api/routes/logs.ts";
import { metricsRoutes } from "../api/routes/metrics.ts";
import { notificationRoutes } from "../api/routes/notifications.ts";
import { onboardingRoutes } from "../api/routes/onboarding.ts";
import { openApiRoutes } from "../api/routes/openapi.ts";
import { overviewRoutes } from "../api/routes/overview.ts";
import { previewRoutes } from "../api/routes/previews.ts";
import { pushRoutes } from "../api/routes/push.ts";
import { sessionRoutes } from "../api/routes/sessions.ts";
import { telemetryRoutes } from "../api/routes/telemetry.ts";
import { terminalRoutes, terminalSocketDoc } from "../api/routes/terminal.ts";
import { userSecretRoutes } from "../api/routes/user-secrets.ts";
import { voiceRoutes, voiceSocketDoc } from "../api/routes/voice.ts";
import { webRoutes } from "../api/routes/web-client.ts";
import { workspaceRoutes } from "../api/routes/workspaces.ts";
import { PreviewGateway } from "../gateway/preview/gateway.ts";
import { requestContext } from "../platform/request-context.ts";
import { contextFromTraceparent, inSpan } from "../platform/tracing.ts";
import { cspDirectives } from "./csp.ts";

export const BODY_LIMIT = "256kb";
const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

export interface BuiltApp {
  app: Koa<AppState>;
  /** Routes reachable without signing in. Exposed so a test can hold it to an explicit list. */
  publicRouter: Router<AppState>;
  /** Routes behind authentication; each request reads and writes through the store as its user. */
  apiRouter: Router<AppState>;
  /** The box agents' API, authenticated by agent token. */
  agentRouter: Router;
  /** The preview proxy; app/server.ts registers its WebSocket upgrades and starts its routing cache. */
  previews: PreviewGateway;
}

interface MatchedLayer {
  path: string | RegExp;
  methods: string[];
}

/** The matched route pattern, not the raw path, so metric cardinality stays bounded. */
function routeLabel(ctx: object): string {
  const route = (ctx as { matched?: MatchedLayer[] }).matched
    ?.toReversed()
    .find((layer) => layer.methods.length > 0)?.path;
  return typeof route === "string" ? route : "unmatched";
}

/** A request slower than this is logged at info, like a server error; the rest at debug. */
const SLOW_REQUEST_MS = 1_000;

export function buildApp(deps: AppDeps): BuiltApp {
  const app = new Koa<AppState>({ proxy: false });
  app.silent = true; // errors are logged by errorMiddleware, with the request id

  app.use(async (ctx, next) => {
    const incoming = ctx.get("x-request-id");
    const requestId = REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = requestId;
    ctx.set("X-Request-Id", requestId);
    // The server span: it continues the caller's trace (a box agent's heartbeat, a traced client), and
    // everything below (queries, builds this request queues, log lines) is under it.
    const parent = contextFromTraceparent(ctx.get("traceparent"), ctx.get("tracestate") || undefined);
    await inSpan(
      `${ctx.method}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "http.request.method": ctx.method,
          "url.path": ctx.path,
          "berth.request_id": requestId,
        },
      },
      async (span) => {
        try {
          await requestContext.run({ requestId }, next);
        } finally {
          const route = routeLabel(ctx);
          span.updateName(`${ctx.method} ${route}`);
          span.setAttribute("http.route", route);
          span.setAttribute("http.response.status_code", ctx.status);
          if (ctx.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        }
      },
      parent,
    );
  });

  app.use(async (ctx, next) => {
    const end = deps.metrics.httpRequestDuration.startTimer();
    const started = performance.now();
    try {
      await next();
    } finally {
      const route = routeLabel(ctx);
      end({ method: ctx.method, route, status: String(ctx.status) });
      const ms = Math.round(performance.now() - started);
      // The web client polls every few seconds: routine requests would bury everything else at info.
      const level = ctx.status >= 500 || ms >= SLOW_REQUEST_MS ? "info" : "debug";
      deps.log[level]({ method: ctx.method, route, status: ctx.status, ms }, "request");
    }
  });

  app.use(errorMiddleware(deps.log));
  // Before helmet (its CSP would break dev servers' pages) and before the body parser (bodies stream to
  // the dev server untouched). It handles only preview paths and preview hosts; the rest passes through.
  const previews = new PreviewGateway(deps);
  app.use(previews.middleware());
  const voiceListen = deps.voice.settings.deepgram?.listenUrl();
  const directives = cspDirectives(deps.config.auth, voiceListen && new URL(voiceListen).origin);
  app.use(helmet(directives ? { contentSecurityPolicy: { directives } } : undefined));
  // The agent API has its own, larger limit (box/protocol.ts); everything else gets BODY_LIMIT. Stripe's
  // webhooks are read raw: their signature covers the exact bytes.
  const jsonBody = bodyParser({ enableTypes: ["json"], jsonLimit: BODY_LIMIT, encoding: "utf-8" });
  app.use((ctx, next) =>
    ctx.path.startsWith("/agent/") || isStripeWebhookPath(ctx.path) ? next() : jsonBody(ctx, next),
  );

  const publicRouter = new Router<AppState>();
  healthRoutes(publicRouter, deps);
  metricsRoutes(publicRouter, deps);
  loginPageRoutes(publicRouter);
  webRoutes(publicRouter);
  loginRoutes(publicRouter, deps);
  authConfigRoutes(publicRouter, deps);
  stripeWebhookRoutes(publicRouter, deps);

  const apiRouter = new Router<AppState>();
  apiRouter.use(deps.authenticator.middleware());
  apiRouter.use(async (ctx, next) => {
    ctx.state.scope = deps.store.as(ctx.state.actor);
    await next();
  });
  meRoutes(apiRouter);
  apiTokenRoutes(apiRouter, deps);
  workspaceRoutes(apiRouter, deps);
  telemetryRoutes(apiRouter, deps);
  buildRoutes(apiRouter, deps);
  adminRoutes(apiRouter, deps);
  sessionRoutes(apiRouter);
  terminalRoutes(apiRouter, deps);
  notificationRoutes(apiRouter, deps);
  pushRoutes(apiRouter, deps);
  previewRoutes(apiRouter, deps, previews);
  overviewRoutes(apiRouter, deps);
  userSecretRoutes(apiRouter);
  onboardingRoutes(apiRouter, deps);
  usageRoutes(apiRouter, deps);
  voiceRoutes(apiRouter, deps);
  // Built from the routers themselves on first request, once every route above is registered.
  openApiRoutes(publicRouter, () => ({
    routers: [
      { router: publicRouter, auth: "public" },
      { router: apiRouter, auth: "user" },
    ],
    websockets: [terminalSocketDoc, voiceSocketDoc],
    version: "1.0.0",
    serverUrl: deps.publicUrl,
  }));
  backupRoutes(apiRouter, deps);
  logRoutes(apiRouter, deps);

  const agents = agentRouter(deps);
  app.use(agents.routes()).use(agents.allowedMethods());
  app.use(publicRouter.routes()).use(publicRouter.allowedMethods());
  app.use(apiRouter.routes()).use(apiRouter.allowedMethods());
  return { app, publicRouter, apiRouter, agentRouter: agents, previews };
}
