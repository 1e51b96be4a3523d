import type Router from "@koa/router";
import type { ParameterizedContext } from "koa";
import type { WorkspaceDriver } from "../../stacks/driver.ts";
import type { UpstreamResolver } from "../boxnet/path-resolver.ts";
import type { TailnetClaims } from "../domain/agents/tailnet-claims.ts";
import type { BackupService } from "../domain/backups/service.ts";
import type { Plans } from "../domain/billing/plans.ts";
import type { StripeWebhooks } from "../domain/billing/webhooks.ts";
import type { Authenticator } from "../domain/identity/authenticate.ts";
import type { WorkspaceService } from "../domain/workspaces/service.ts";
import type { TerminalGateway } from "../gateway/terminal/gateway.ts";
import type { VoiceGateway } from "../gateway/voice/gateway.ts";
import type { Config } from "../platform/config.ts";
import type { LogExporter } from "../platform/log-line.ts";
import type { Logger } from "../platform/logger.ts";
import type { Metrics } from "../platform/metrics.ts";
import type { SecretBox } from "../platform/secret-box.ts";
import type { UserActor } from "../store/actors.ts";
import type { PgListener } from "../store/listener.ts";
import type { Limiter } from "../store/rate-limit.ts";
import type { AuthorizedStore, Store } from "../store/store.ts";

/** What every request carries once it has passed the middleware for its router. */
export interface AppState {
  requestId: string;
  actor: UserActor;
  /** A personal API token authenticated the request (not a web sign-in): it may not create tokens. */
  viaApiToken?: boolean;
  /** The store as the signed-in user: every read and write of the request goes through it. */
  scope: AuthorizedStore;
}

export type AppContext = ParameterizedContext<AppState>;
export type ApiRouter = Router<AppState>;

/** The control plane's long-lived parts, handed to every route module. */
export interface AppDeps {
  config: Config;
  /** The authorization layer; routes use the request's `scope`, the agent API and the gateway `as(actor)`. */
  store: Store;
  log: Logger;
  metrics: Metrics;
  /** The one way to reach a box (BERTH_BOX_PATHS order): the relay, the preview proxy, health checks. */
  upstream: UpstreamResolver;
  authenticator: Authenticator;
  limiters: { login: Limiter };
  /** The terminal relay: token minting (api/routes/terminal.ts) and the WebSocket upgrade it serves. */
  terminal: TerminalGateway;
  /** Voice input: Deepgram settings, token mint limits, and the gateway stream (api/routes/voice.ts). */
  voice: VoiceGateway;
  listener: PgListener;
  secretBox: SecretBox;
  driver: WorkspaceDriver;
  workspaces: WorkspaceService;
  /** The URL clients and box agents use to reach this control plane; known once the server listens. */
  publicUrl: string;
  /** How often box agents should heartbeat (seconds); tests shorten it. */
  agentHeartbeatSeconds: number;
  /** Box-reported tailnet addresses are used only once the box proved them (domain/agents/tailnet-claims.ts). */
  tailnetClaims: TailnetClaims;
  /** Web Push: the VAPID public key browsers subscribe with (platform/vapid.ts). */
  vapidPublicKey: string;
  /** Tests: accept push endpoints on IP literals (a local push service stand-in). */
  allowIpPushEndpoints?: boolean;
  /** Plans and usage; Stripe's webhooks (null without STRIPE_WEBHOOK_SECRET). */
  billing: { plans: Plans; webhooks: StripeWebhooks | null };
  /** Backups: on demand, restore, export; the agent's reports (domain/backups/service.ts). */
  backups: BackupService;
  /** Ships stored log lines to an OTLP logs backend (BERTH_LOG_OTLP_ENDPOINT); null when none is set. */
  logExporter: LogExporter | null;
}
