import type Router from "@koa/router";
import type { ParameterizedContext } from "koa";
import type { WorkspaceDriver } from "../../stacks/driver.ts";
import type { TailnetClaims } from "../agents/tailnet-claims.ts";
import type { Actor } from "../auth/actor.ts";
import type { Authenticator } from "../auth/authenticate.ts";
import type { OwnerScope } from "../authz/scope.ts";
import type { Config } from "../config.ts";
import type { Database } from "../db/client.ts";
import type { PgListener } from "../db/listener.ts";
import type { TerminalGateway } from "../gateway/terminal/gateway.ts";
import type { UpstreamResolver } from "../gateway/upstream.ts";
import type { Logger } from "../observability/logger.ts";
import type { Metrics } from "../observability/metrics.ts";
import type { Limiter } from "../security/rate-limit.ts";
import type { SecretBox } from "../security/secret-box.ts";
import type { WorkspaceService } from "../workspaces/service.ts";

/** What every request carries once it has passed the middleware for its router. */
export interface AppState {
  requestId: string;
  actor: Actor;
  scope: OwnerScope;
}

export type AppContext = ParameterizedContext<AppState>;
export type ApiRouter = Router<AppState>;

/** The control plane's long-lived parts, handed to every route module. */
export interface AppDeps {
  config: Config;
  database: Database;
  log: Logger;
  metrics: Metrics;
  /** The one way to reach a box (BERTH_BOX_PATHS order): the relay, the preview proxy, health checks. */
  upstream: UpstreamResolver;
  authenticator: Authenticator;
  limiters: { login: Limiter };
  /** The terminal relay: token minting (routes/terminal.ts) and the WebSocket upgrade it serves. */
  terminal: TerminalGateway;
  listener: PgListener;
  secretBox: SecretBox;
  driver: WorkspaceDriver;
  workspaces: WorkspaceService;
  /** The URL clients and box agents use to reach this control plane; known once the server listens. */
  publicUrl: string;
  /** How often box agents should heartbeat (seconds); tests shorten it. */
  agentHeartbeatSeconds: number;
  /** Box-reported tailnet addresses are used only once the box proved them (agents/tailnet-claims.ts). */
  tailnetClaims: TailnetClaims;
}
