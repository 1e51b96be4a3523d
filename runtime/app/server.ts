/**
 * The composition root: builds every long-lived part of the control plane from a Config, in dependency
 * order, and tears them down in reverse.
 */

import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { Agent as HttpsAgent } from "node:https";
import type { AddressInfo, ListenOptions } from "node:net";
import { join } from "node:path";
import type { WorkspaceDriver } from "../../stacks/driver.ts";
import type { AppDeps } from "../api/context.ts";
import { addressPolicy } from "../boxnet/address-policy.ts";
import { type UpstreamOptions, UpstreamResolver } from "../boxnet/path-resolver.ts";
import { TailnetClaims } from "../domain/agents/tailnet-claims.ts";
import { BackupService, type BackupServiceOptions } from "../domain/backups/service.ts";
import { Plans } from "../domain/billing/plans.ts";
import { createStripe, type StripeEndpoint } from "../domain/billing/stripe-client.ts";
import { MeterOutbox, type OutboxOptions } from "../domain/billing/stripe-meter.ts";
import { StripeWebhooks } from "../domain/billing/webhooks.ts";
import { LOCAL_OWNER_EXTERNAL_ID, upsertUser } from "../domain/identity/actor.ts";
import { Authenticator } from "../domain/identity/authenticate.ts";
import { SessionTokens } from "../domain/identity/session-cookie.ts";
import { PushSender } from "../domain/push/push-sender.ts";
import { DeepgramClient } from "../domain/voice/deepgram.ts";
import { WorkspaceService } from "../domain/workspaces/service.ts";
import type { ServedHook } from "../gateway/preview/gateway.ts";
import { TerminalGateway, type TerminalGatewayOptions } from "../gateway/terminal/gateway.ts";
import { VoiceGateway, type VoiceGatewayOptions } from "../gateway/voice/gateway.ts";
import type { Config } from "../platform/config.ts";
import { tuneGarbageCollector } from "../platform/gc-tuning.ts";
import { LogStoreSink } from "../platform/log-sink.ts";
import { createLogger, type Logger } from "../platform/logger.ts";
import { createMetrics } from "../platform/metrics.ts";
import { OtlpLogExporter } from "../platform/otlp-log-exporter.ts";
import { SecretBox } from "../platform/secret-box.ts";
import { startTracing } from "../platform/tracing.ts";
import { UpgradeDispatcher } from "../platform/upgrade-dispatcher.ts";
import { loadVapidKeys } from "../platform/vapid.ts";
import { SYSTEM, type UserActor } from "../store/actors.ts";
import { connectDatabase, type Database } from "../store/client.ts";
import { startEmbeddedPostgres } from "../store/embedded.ts";
import { PgListener } from "../store/listener.ts";
import { runMigrations } from "../store/migrate.ts";
import { Store } from "../store/store.ts";
import { Autostop } from "../workers/autostop.ts";
import { BuildWorker, type BuildWorkerOptions } from "../workers/build-worker.ts";
import { type HealthOptions, HealthProber } from "../workers/health-prober.ts";
import { LogRetention } from "../workers/log-retention.ts";
import { MeterTicker } from "../workers/metering.ts";
import { QuotaEnforcer } from "../workers/quota-enforcer.ts";
import { Reconciler } from "../workers/reconciler.ts";
import { startSchedules } from "../workers/schedules.ts";
import { createDriver } from "./drivers.ts";
import { buildApp } from "./http-app.ts";

/**
 * The control plane's parts. The composition root also keeps the database itself (for migrations,
 * shutdown, and tests that arrange rows); nothing it hands to the layers below carries it: they reach
 * the data through `store`, the authorization layer.
 */
export interface ControlPlaneDeps extends AppDeps {
  database: Database;
}

export interface ControlPlane {
  url: string;
  server: Server;
  deps: ControlPlaneDeps;
  upgrades: UpgradeDispatcher;
  worker: BuildWorker | null;
  reconciler: Reconciler;
  /** Active health checks; the schedule runs `probeAll()` every minute, tests call it directly. */
  health: HealthProber;
  /** Web Push delivery (tests wait on `settle()`). */
  push: PushSender;
  /** Billing's jobs (scheduled every minute; tests call them directly). `outbox` is null without STRIPE_SECRET_KEY. */
  billing: { meter: MeterTicker; enforcer: QuotaEnforcer; outbox: MeterOutbox | null };
  /** The log store's partitions and retention (scheduled hourly; tests call `tick()` directly). */
  logRetention: LogRetention;
  /** Local mode only: the link that signs the owner in. Secret: print it, never log it. */
  loginUrl: string | null;
  close(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  /** Overrides the failed-login rate limit (tests exercise it with small numbers). */
  loginRateLimit?: {
    points: number;
    durationSeconds: number;
    globalPoints?: number;
    maxBlockSeconds?: number;
  };
  /** Replaces the driver chosen by BERTH_DRIVER (tests use a scripted one). */
  driver?: WorkspaceDriver;
  /** false: this process only serves the API and runs no builds. */
  runBuilds?: boolean;
  /** false: no pg-boss schedules in this process (tests call `reconciler.tick()` themselves). */
  runSchedules?: boolean;
  agentHeartbeatSeconds?: number;
  /** Resolver timings (tests shorten the TTL and the re-probe period). */
  upstream?: Partial<Pick<UpstreamOptions, "connectTimeoutMs" | "ttlMs" | "reprobeMs">>;
  health?: Partial<HealthOptions>;
  /** Terminal relay settings (tests lower the caps, limits and timeouts, and wrap the upstream connect). */
  terminal?: Partial<TerminalGatewayOptions>;
  /** Voice stream settings (tests lower limits and rates). */
  voice?: Partial<VoiceGatewayOptions>;
  worker?: Partial<Omit<BuildWorkerOptions, "store" | "listener" | "driver" | "log" | "metrics">>;
  /** Web Push: tests trust a local push service's certificate and allow its IP-literal endpoint. */
  push?: { agent?: HttpsAgent; allowIpEndpoints?: boolean };
  /** Billing: a controllable clock, and Stripe at another address (tests run a fake there). */
  billing?: { clock?: () => Date; stripeEndpoint?: StripeEndpoint; outbox?: Partial<OutboxOptions> };
  /**
   * The central log store's sink for the control plane's own lines; by default one is made with the
   * logger (a test that passes its own logger passes the sink it gave that logger, if any).
   */
  logSink?: LogStoreSink;
  /** Backup timings (tests shorten the poll and the nightly window). */
  backups?: Partial<Pick<BackupServiceOptions, "pollMs" | "nightlyWindow" | "retry">>;
}

/** Opens the configured database, or starts the embedded one under the data directory. */
export async function openDatabase(
  config: Config,
  log: Logger,
  options: { joinRunning?: boolean } = {},
): Promise<{ database: Database; stopEmbedded?: () => Promise<void> }> {
  if (config.databaseUrl) return { database: connectDatabase(config.databaseUrl) };
  log.info({ dir: join(config.dataDir, "postgres") }, "starting embedded Postgres");
  const embedded = await startEmbeddedPostgres(join(config.dataDir, "postgres"), {
    onLog: (line) => log.debug({ postgres: line.trim() }, "postgres"),
    joinRunning: options.joinRunning,
  });
  return { database: connectDatabase(embedded.url), stopEmbedded: embedded.stop };
}

function listen(server: Server, options: ListenOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export async function startControlPlane(config: Config, options: StartOptions = {}): Promise<ControlPlane> {
  // Before any traffic: proxied bodies would otherwise cost a full collection every ~64 MB (gc-tuning.ts).
  tuneGarbageCollector();
  // The process-wide tracer: OTLP when configured; otherwise only the context that carries trace ids.
  const tracing = startTracing({
    tracesUrl: config.tracing.tracesUrl,
    serviceName: config.tracing.serviceName,
  });
  const logSink = options.logSink ?? (options.logger ? null : new LogStoreSink());
  const log =
    options.logger ?? createLogger(config.logLevel, undefined, logSink ? { stream: logSink } : undefined);
  const cleanup: Array<() => Promise<void>> = [async () => tracing.shutdown()];
  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      for (const fn of cleanup.reverse())
        await fn().catch((err) => log.warn({ err }, "shutdown step failed"));
    })();
    return closing;
  };
  try {
    const { database, stopEmbedded } = await openDatabase(config, log);
    if (stopEmbedded) cleanup.push(stopEmbedded);
    cleanup.push(() => database.close());
    await runMigrations(database);

    const secretBox = config.secretKeys
      ? SecretBox.fromSpec(config.secretKeys)
      : SecretBox.fromFile(join(config.dataDir, "secret-keys"));

    const store = new Store(database, { secretBox });

    // The log store: today's partitions before the first line, then the sink writes in batches.
    const logRetention = new LogRetention({ store, log, retentionDays: config.logStore.retentionDays });
    await logRetention.tick();
    const logExporter = config.logStore.otlpUrl
      ? new OtlpLogExporter({ url: config.logStore.otlpUrl, serviceName: config.tracing.serviceName })
      : null;
    if (logSink) {
      const writer = store.as(SYSTEM.logs).logs;
      logSink.attach(async (lines) => {
        const stored = await writer.append(lines);
        await logExporter?.export(stored).catch(() => {});
      });
      // Runs before the database closes (cleanup is reversed): the last lines are written.
      cleanup.push(() => logSink.close());
    }

    let localOwner: UserActor | null = null;
    let localToken: string | null = null;
    if (config.auth.mode === "local") {
      localOwner = await upsertUser(store, LOCAL_OWNER_EXTERNAL_ID, { isAdmin: true });
      localToken = config.auth.localToken ?? randomBytes(32).toString("base64url");
    }

    const listener = new PgListener(database.url, log);
    await listener.start();
    cleanup.push(() => listener.close());
    const driver = options.driver ?? (await createDriver(config, log));

    const metrics = createMetrics();
    // Loopback boxes exist only with a driver whose boxes live on this machine; elsewhere a loopback address
    // is an attack. The preview proxy further checks that the listener is the workspace's own.
    const loopbackBoxes = addressPolicy({ allowLoopback: driver.localBoxes !== undefined });
    const upstream = new UpstreamResolver({
      metrics,
      log,
      allowAddress: loopbackBoxes,
      pathOrder: config.boxPaths,
      ...options.upstream,
    });
    cleanup.push(async () => upstream.close());
    const terminal = new TerminalGateway({
      store,
      secretBox,
      log,
      registry: metrics.registry,
      // Read per upgrade: the public URL is known only once the server listens.
      allowedOrigins: () => config.webOrigins ?? [new URL(deps.publicUrl).origin],
      allowAddress: loopbackBoxes,
      upstream,
      options: options.terminal,
    });
    const voice = new VoiceGateway({
      store,
      secretBox,
      log,
      settings: {
        deepgram: config.voice.apiKey
          ? new DeepgramClient({ apiKey: config.voice.apiKey, baseUrl: config.voice.deepgramUrl })
          : null,
        dailySeconds: config.voice.dailySeconds,
      },
      allowedOrigins: () => config.webOrigins ?? [new URL(deps.publicUrl).origin],
      options: options.voice,
    });
    // Failed logins: 10 per source and 100 overall per 15 minutes, then blocks doubling up to a day.
    const rule = {
      globalPoints: 100,
      maxBlockSeconds: 24 * 3600,
      ...(options.loginRateLimit ?? { points: 10, durationSeconds: 15 * 60 }),
    };
    const vapid = loadVapidKeys({
      dataDir: config.dataDir,
      secretBox,
      ...config.vapid,
      publicUrl: config.publicUrl,
    });
    const plans = new Plans(config.billing, options.billing?.clock);
    const backups = new BackupService({ store, driver, metrics, log, ...options.backups });
    const deps: ControlPlaneDeps = {
      config,
      database,
      store,
      log,
      metrics,
      upstream,
      authenticator: new Authenticator({
        store,
        auth: config.auth,
        sessions: new SessionTokens(secretBox.deriveKey("web-session")),
        localOwner,
        localToken,
      }),
      limiters: { login: store.rateLimiter({ name: "login", ...rule }) },
      listener,
      secretBox,
      driver,
      workspaces: new WorkspaceService({
        driverName: driver.name,
        defaults: config.workspaceDefaults,
        quota: plans,
      }),
      publicUrl: config.publicUrl ?? "",
      agentHeartbeatSeconds: options.agentHeartbeatSeconds ?? 10,
      terminal,
      voice,
      tailnetClaims: new TailnetClaims({
        store,
        log,
        allowAddress: loopbackBoxes,
      }),
      vapidPublicKey: vapid.publicKey,
      allowIpPushEndpoints: options.push?.allowIpEndpoints ?? false,
      billing: {
        plans,
        webhooks: config.billing.stripeWebhookSecret
          ? new StripeWebhooks({ store, secret: config.billing.stripeWebhookSecret, plans, log })
          : null,
      },
      backups,
      logExporter,
    };

    const { app, previews } = buildApp(deps);
    await previews.start();
    // The preview proxy's lean path answers admitted preview requests itself; everything else is Koa's.
    const onServed: ServedHook = (method, form, status, seconds) =>
      metrics.httpRequestDuration.observe(
        { method, route: `preview:${form}`, status: String(status) },
        seconds,
      );
    const koa = app.callback();
    const server = createServer(previews.requestListener(koa, { onServed }));
    previews.attachRelay(server, { onServed });
    const upgrades = new UpgradeDispatcher(log);
    upgrades.register(previews.matchUpgrade, previews.handleUpgrade);
    terminal.register(upgrades);
    voice.register(upgrades);
    upgrades.attach(server);
    // Several processes (BERTH_WORKERS) each bind the port with SO_REUSEPORT; the kernel spreads connections.
    const reusePort = config.workers > 1;
    await listen(server, { port: config.port, host: config.host, reusePort, exclusive: true });
    cleanup.push(() => closeServer(server));
    previews.reservePort((server.address() as AddressInfo).port);
    if (config.previewListen) {
      const previewServer = createServer(previews.requestListener(koa, { previewOnly: true, onServed }));
      previews.attachRelay(previewServer, { onServed });
      const previewUpgrades = new UpgradeDispatcher(log);
      previewUpgrades.register(previews.matchUpgrade, previews.handleUpgrade);
      previewUpgrades.attach(previewServer);
      await listen(previewServer, { ...config.previewListen, reusePort, exclusive: true });
      cleanup.push(() => closeServer(previewServer));
      previews.reservePort((previewServer.address() as AddressInfo).port);
      log.info(
        { port: (previewServer.address() as AddressInfo).port, domain: config.previewDomain },
        "preview listener",
      );
    }
    // Before the server closes: proxied HMR sockets are no longer the server's and would hold its close.
    cleanup.push(async () => previews.stop());
    // Before the server closes: terminal sockets get 1001 and their activity is recorded.
    cleanup.push(() => terminal.close());
    cleanup.push(() => voice.close());
    const { port } = server.address() as AddressInfo;
    const host = config.host.includes(":") ? `[${config.host}]` : config.host;
    const url = `http://${host}:${port}`;
    const publicUrl = config.publicUrl ?? url;
    deps.publicUrl = publicUrl;

    let worker: BuildWorker | null = null;
    if (options.runBuilds !== false) {
      worker = new BuildWorker({
        store,
        listener,
        driver,
        log,
        metrics,
        controlPlaneUrl: publicUrl,
        concurrency: config.buildConcurrency,
        // 0 turns the pre-stop backup off.
        ...(config.backups.preStopSeconds > 0
          ? {
              beforeStop: (workspaceId: string, line: (l: string) => void) =>
                backups.backupBeforeStop(workspaceId, config.backups.preStopSeconds * 1000, line),
            }
          : {}),
        ...options.worker,
      });
      await worker.start();
      const w = worker;
      cleanup.push(() => w.stop());
    }

    const reconciler = new Reconciler({ store, driver, metrics, log });
    const heartbeatSeconds = options.agentHeartbeatSeconds ?? 10;
    const health = new HealthProber({
      store,
      upstream,
      metrics,
      log,
      // Three missed heartbeats, and never less than half a minute.
      options: { heartbeatStaleMs: Math.max(30_000, 3_000 * heartbeatSeconds), ...options.health },
    });
    const autostop = new Autostop({ store, workspaces: deps.workspaces, log });
    const push = new PushSender({
      scope: store.as(SYSTEM.push),
      vapid,
      log,
      ...(options.push?.agent ? { agent: options.push.agent } : {}),
    });
    const unfollowPush = await push.follow(listener);
    cleanup.push(async () => {
      unfollowPush();
      await push.settle();
    });
    const billingClock = options.billing?.clock;
    const billing = {
      // Without a test clock the tick asks Postgres for the time: one clock for every replica.
      meter: new MeterTicker({
        store,
        log,
        metrics,
        clock: billingClock ? () => billingClock() : () => null,
      }),
      enforcer: new QuotaEnforcer({ store, workspaces: deps.workspaces, plans, log }),
      // Local mode (and any deployment without a Stripe key) meters and shows usage, and sends nothing.
      outbox: config.billing.stripeSecretKey
        ? new MeterOutbox({
            store,
            stripe: createStripe(config.billing.stripeSecretKey, options.billing?.stripeEndpoint),
            streamClient: (token) => createStripe(token, options.billing?.stripeEndpoint),
            eventName: config.billing.meterEventName,
            log,
            metrics,
            clock: billingClock,
            options: { api: config.billing.meterApi, ...options.billing?.outbox },
          })
        : null,
    };
    if (options.runSchedules !== false) {
      const outbox = billing.outbox;
      const scheduler = await startSchedules(database.url, log, [
        { name: "reconcile", cron: "* * * * *", run: () => reconciler.tick() },
        { name: "health-probe", cron: "* * * * *", run: () => health.probeAll() },
        { name: "autostop", cron: "* * * * *", run: () => autostop.tick() },
        {
          name: "billing-meter",
          cron: "* * * * *",
          run: async () => {
            await billing.meter.tick();
            await billing.enforcer.run();
          },
        },
        ...(outbox ? [{ name: "billing-outbox", cron: "* * * * *", run: () => outbox.drain() }] : []),
        // Every 5 minutes: workspaces whose slot in tonight's window has come get their one nightly run.
        { name: "backup-nightly", cron: "*/5 * * * *", run: () => backups.nightlyTick() },
        { name: "backup-stale-gauge", cron: "*/5 * * * *", run: () => backups.refreshStaleGauge() },
        // Hourly: box telemetry history older than 24 h (a live box's is also pruned as it reports).
        {
          name: "telemetry-prune",
          cron: "17 * * * *",
          run: () => store.as(SYSTEM.metrics).telemetry.prune(),
        },
        // Hourly: tomorrow's log partitions exist well before midnight; expired days go.
        { name: "log-retention", cron: "7 * * * *", run: () => logRetention.tick() },
      ]);
      cleanup.push(() => scheduler.stop());
    }
    // Runs before the scheduler's graceful stop (cleanup is reversed), so a run in its spread ends now.
    cleanup.push(async () => health.stop());
    log.info({ url, mode: config.auth.mode, driver: config.driver }, "control plane listening");
    return {
      url,
      server,
      deps,
      upgrades,
      worker,
      reconciler,
      health,
      push,
      billing,
      logRetention,
      loginUrl: localToken ? `${publicUrl}/login#token=${localToken}` : null,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
