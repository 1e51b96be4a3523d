/**
 * The box agent: brings a workspace up step by step, reports home, and takes it down on request.
 *
 *   (VM) mount the volume → layout (+ /home link on a VM) → outbox and calls home → Claude Code hooks →
 *   loopback endpoint → terminal endpoint → session capture tailer and preview scanner → `ready`
 *
 * A failed step puts the agent in `start_error` (`start_timeout` when the volume never appeared) with the
 * error as `lastError`, and the agent STAYS UP reporting it: the control plane then sees why the box is not
 * ready and decides (retry the build, or fail it), instead of watching a unit restart in a loop with no
 * explanation. The agent exits non-zero only when it cannot call home at all (boot config unreadable; see
 * main.ts). If the volume or layout is what failed, the outbox lives in a fallback directory meanwhile.
 *
 * Shutdown (SIGTERM): `shutting_down` → stop detectors → flush the outbox and send a final heartbeat →
 * `off`. tmux sessions are left alone: stopping them is the stop protocol's decision (berth-tmux.service
 * on a VM, the local driver locally), and an agent restart must never kill the user's work.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "pino";
import type { BootConfig } from "./boot-config.ts";
import { ControlPlaneClient } from "./home/client.ts";
import {
  type BackupRunner,
  DesiredStateApplier,
  NotReadyError,
  type OnboardRunner,
  type RestoreRunner,
  type SessionManager,
} from "./home/desired-state.ts";
import { type HeartbeatStatus, HomeLoop } from "./home/home-loop.ts";
import { Outbox } from "./home/outbox.ts";
import type { SessionPlan } from "./home/session-plan.ts";
import { ensureHomeLink } from "./layout/home-link.ts";
import {
  type MountVolumeOptions,
  type MountVolumeResult,
  mountVolume,
  VolumeTimeoutError,
} from "./layout/volume.ts";
import { ensureLayout, type LayoutPaths, layoutPaths, type Owner } from "./layout/workspace-layout.ts";
import { installClaudeHooks, writeAgentPortFile } from "./notifications/install-hooks.ts";
import { LogTailer } from "./notifications/log-tailer.ts";
import { type LoopbackServer, startLoopbackServer } from "./notifications/loopback-server.ts";
import { NotificationCenter } from "./notifications/notification-center.ts";
import { type PreviewOwnership, PreviewScanner } from "./previews/preview-scanner.ts";
import { type AgentEventDraft, type AgentLifecycle, type LogPayload, SESSION_NAME_RE } from "./protocol.ts";
import { systemMetrics } from "./telemetry/metrics.ts";
import { parseTraceparent } from "./telemetry/trace.ts";

export const AGENT_VERSION = readVersion();

/** What the agent needs from whatever serves terminals (box/terminal's endpoint, or ttyd under systemd). */
export interface TerminalHandle {
  kind: string;
  port: number;
  close(): Promise<void>;
}

export interface AgentOptions {
  config: BootConfig;
  mode: "vm" | "local";
  log: Logger;
  /** Box user (VM) for ownership; null leaves ownership alone (local mode). */
  boxUser: Owner | null;
  /** Why the box user could not be resolved (VM): the start fails with it rather than give root the tree. */
  boxUserError?: string;
  agentOwner: Owner | null;
  sessions: SessionManager | null;
  /** Starts the terminal endpoint once the layout exists. Null: no terminal (tests). */
  startTerminal: ((paths: LayoutPaths) => Promise<TerminalHandle>) | null;
  previewOwner: PreviewOwnership;
  backup?: BackupRunner;
  /** Secrets and guided starts for new sessions, held in memory (the same object the tmux side reads). */
  plan?: SessionPlan;
  /** Applies onboarding actions once the workspace is ready. */
  onboard?: OnboardRunner;
  restore?: RestoreRunner;
  /** VM only: joins the tailnet and returns the tailnet IP, or null when not configured. */
  joinTailnet?: () => Promise<string | null>;
  mount?: (options: MountVolumeOptions) => Promise<MountVolumeResult>;
  /** Where `/home/<user>` lives on a VM (default `/home`). */
  homeDir?: string;
  /** Where the outbox goes while the volume's `system/state` is unavailable. */
  fallbackStateDir?: string;
  heartbeatIntervalMs?: number;
  previewIntervalMs?: number;
  tailPollMs?: number;
  dedupe?: { windowMs?: number; holdMs?: number };
  /** Silence of a working Claude's pane after which it counts as idle (interrupted); see claude-state.ts. */
  claudeQuietMs?: number;
  volumeWaitMs?: number;
}

class StepError extends Error {
  readonly lifecycle: AgentLifecycle;
  constructor(step: string, err: unknown, lifecycle: AgentLifecycle = "start_error") {
    super(`${step}: ${(err as Error).message ?? String(err)}`);
    this.lifecycle = lifecycle;
  }
}

/** How long a terminal attach waits for the control plane to describe a session it has not named yet. */
const ATTACH_WAITS_FOR_PLAN_MS = 5_000;

export class Agent {
  readonly startedAt = new Date();
  private lifecycleState: AgentLifecycle = "created";
  private readyAt: Date | null = null;
  private startError: string | null = null;
  private warnings: string[] = [];
  private paths: LayoutPaths;
  private outbox: Outbox | null = null;
  private home: HomeLoop | null = null;
  private applier: DesiredStateApplier | null = null;
  private loopback: LoopbackServer | null = null;
  private terminal: TerminalHandle | null = null;
  private tailer: LogTailer | null = null;
  private previews: PreviewScanner | null = null;
  private center: NotificationCenter | null = null;
  private claudeSweep: NodeJS.Timeout | null = null;
  private tailnetIp: string | null = null;
  private earlyLogs: Array<{ log: LogPayload; at: string }> = [];
  private lastSessions: string[] | undefined;
  private readonly o: AgentOptions;
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private starting: Promise<void> | null = null;

  constructor(options: AgentOptions) {
    this.o = options;
    this.log = options.log;
    this.paths = layoutPaths(options.config.settings.BERTH_WORKSPACE_ROOT);
  }

  get lifecycle(): AgentLifecycle {
    return this.lifecycleState;
  }
  get lastError(): string | null {
    return this.startError ?? this.home?.status.lastError ?? null;
  }
  get homeStatus() {
    return this.home?.status ?? null;
  }
  get loopbackPort(): number | null {
    return this.loopback?.port ?? null;
  }

  /** Backup and restore progress and outcomes (box/backups), delivered exactly once through the outbox. */
  report(draft: AgentEventDraft): void {
    this.append(draft);
  }

  /** Log lines from the shipper; held in memory until the outbox exists. */
  shipLog(log: LogPayload, at: string): void {
    if (this.outbox) this.append({ type: "log", at, payload: log });
    else if (this.earlyLogs.length < 500) this.earlyLogs.push({ log, at });
  }

  /** Brings the box up. Never throws: failures become `start_error` / `start_timeout`. */
  start(): Promise<void> {
    this.starting ??= this.runStart();
    return this.starting;
  }

  private async runStart(): Promise<void> {
    this.setLifecycle("starting");
    try {
      await this.bringUp();
      this.readyAt = new Date();
      this.setLifecycle("ready");
      this.log.info(
        { ms: this.readyAt.getTime() - this.startedAt.getTime(), terminal: this.terminal?.kind ?? null },
        "workspace ready",
      );
    } catch (err) {
      if (!this.home) this.startHome(this.openFallbackOutbox());
      if (this.abort.signal.aborted) {
        // SIGTERM arrived mid-start: not a start failure; shutdown() takes it from here.
        this.log.info("start interrupted by shutdown");
        return;
      }
      const e = err instanceof StepError ? err : new StepError("start", err);
      this.startError = e.message.slice(0, 2000);
      this.log.error({ err: this.startError }, "workspace failed to start; staying up to report it");
      this.setLifecycle(e.lifecycle, this.startError);
    }
  }

  /** Between bring-up steps: stop early when a shutdown was requested. */
  private checkAborted(): void {
    if (this.abort.signal.aborted) throw new StepError("start", new Error("shutting down"));
  }

  private async bringUp(): Promise<void> {
    const s = this.o.config.settings;
    if (this.o.mode === "vm") {
      if (this.o.boxUserError || !this.o.boxUser)
        throw new StepError("box user", new Error(this.o.boxUserError ?? "not resolved"));
      if (!s.BERTH_VOLUME_DEVICE) throw new StepError("mount", new Error("BERTH_VOLUME_DEVICE is not set"));
      try {
        const r = await (this.o.mount ?? mountVolume)({
          device: s.BERTH_VOLUME_DEVICE,
          mountPoint: s.BERTH_WORKSPACE_ROOT,
          waitTimeoutMs: this.o.volumeWaitMs ?? 120_000,
          signal: this.abort.signal,
          log: (msg) => this.log.info(msg),
        });
        this.log.info(r, "volume mounted");
      } catch (err) {
        throw new StepError(
          "mount volume",
          err,
          err instanceof VolumeTimeoutError ? "start_timeout" : "start_error",
        );
      }
    }
    try {
      const report = ensureLayout({
        root: s.BERTH_WORKSPACE_ROOT,
        user: this.o.boxUser,
        agent: this.o.agentOwner,
      });
      if (report.created.length || report.fixed.length)
        this.log.info({ created: report.created.length, fixed: report.fixed }, "workspace layout enforced");
      for (const w of report.warnings) this.warn(w);
      if (this.o.mode === "vm") {
        const link = ensureHomeLink(join(this.o.homeDir ?? "/home", s.BERTH_BOX_USER), this.paths.home);
        if (link.action !== "unchanged") this.log.info(link, "home link");
      } else this.log.info({ home: this.paths.home }, "local mode: /home is not touched");
    } catch (err) {
      throw new StepError("layout", err);
    }

    this.checkAborted();
    this.startHome(this.openOutbox(join(this.paths.state, "outbox.jsonl")));

    if (this.o.mode === "vm" && this.o.joinTailnet) {
      try {
        this.tailnetIp = await this.o.joinTailnet();
      } catch (err) {
        // The tailnet is the fallback path to the box; the public address still works.
        this.warn(`tailscale: ${(err as Error).message}`);
      }
    }

    try {
      const r = await installClaudeHooks({
        claudeDir: this.paths.claude,
        portFile: agentPortFile(this.paths.root),
        owner: this.o.boxUser,
      });
      this.log.info({ changed: r.changed }, "Claude Code hooks installed");
    } catch (err) {
      // The user's own settings file is broken: notifications degrade to the OSC/BEL path; the box works.
      this.warn((err as Error).message);
    }

    this.center = new NotificationCenter({
      publish: (payload) => this.append({ type: "notification", at: new Date().toISOString(), payload }),
      publishState: (payload, at) => this.append({ type: "claude_state", at: at.toISOString(), payload }),
      log: this.log,
      ...this.o.dedupe,
      ...(this.o.claudeQuietMs !== undefined ? { quietMs: this.o.claudeQuietMs } : {}),
      claudeStatePath: join(this.paths.state, "claude-states.json"),
    });
    this.claudeSweep = setInterval(() => this.center?.claude.sweep(), 5_000);
    this.claudeSweep.unref();
    try {
      this.loopback = await startLoopbackServer({
        port: s.BERTH_AGENT_PORT,
        onHook: (input, session) => this.center!.fromHook(input, session),
        health: () => this.health(),
        // Not gated on `ready` like desired state: the layout exists by now, and ttyd attaches only once
        // its endpoint is up, which is the step after this one.
        ...(this.o.sessions ? { onEnsureSession: (name: string) => this.ensureForAttach(name) } : {}),
      });
      // The hooks read the port from here at each run: a Claude started under an earlier agent finds us.
      writeAgentPortFile(agentPortFile(this.paths.root), this.loopback.port);
    } catch (err) {
      throw new StepError("loopback endpoint", err);
    }

    this.checkAborted();
    if (this.o.startTerminal) {
      try {
        this.terminal = await this.o.startTerminal(this.paths);
      } catch (err) {
        throw new StepError("terminal endpoint", err);
      }
    }

    this.checkAborted();
    this.tailer = new LogTailer({
      dir: this.paths.sessionLogs,
      onData: (session, chunk) => this.center!.fromTerminal(session, chunk),
      onReset: (session) => this.center!.resetTerminal(session),
      onError: (err) => this.log.warn({ err: err.message }, "session log tailer"),
      pollMs: this.o.tailPollMs ?? 250,
      statePath: join(this.paths.state, "session-log-offsets.json"),
    });
    this.tailer.start();

    const exclude = [s.BERTH_AGENT_PORT, s.BERTH_TTYD_PORT];
    if (this.terminal) exclude.push(this.terminal.port);
    this.previews = new PreviewScanner({
      owner: this.o.previewOwner,
      excludePorts: exclude,
      publish: (payload) => this.append({ type: "preview", at: new Date().toISOString(), payload }),
      log: this.log,
      intervalMs: this.o.previewIntervalMs ?? 2000,
    });
    this.previews.start();
  }

  /** SIGTERM: report `shutting_down`, stop detectors and endpoints, flush, report `off`. */
  async shutdown(flushTimeoutMs = 10_000): Promise<{ drained: boolean }> {
    this.abort.abort();
    await this.starting;
    this.setLifecycle("shutting_down");
    await this.previews?.stop();
    this.tailer?.stop();
    if (this.claudeSweep) clearInterval(this.claudeSweep);
    this.center?.flush();
    await this.loopback?.close().catch(() => {});
    await this.terminal?.close().catch((err: Error) => this.log.warn({ err: err.message }, "terminal close"));
    let drained = true;
    if (this.home) {
      await this.home.stop();
      drained = await this.home.flush(flushTimeoutMs);
      this.setLifecycle("off");
      await this.home.flush(Math.min(3000, flushTimeoutMs));
    } else this.setLifecycle("off");
    this.outbox?.close();
    this.outbox = null;
    return { drained };
  }

  health(): { ok: boolean } & Record<string, unknown> {
    return {
      ok: this.lifecycleState === "ready",
      lifecycle: this.lifecycleState,
      version: AGENT_VERSION,
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      lastError: this.lastError,
      warnings: this.warnings,
      terminal: this.terminal ? { kind: this.terminal.kind, port: this.terminal.port } : null,
      home: this.home
        ? {
            connected: this.home.status.connected,
            authFailed: this.home.status.authFailed,
            lastHeartbeatAt: this.home.status.lastHeartbeatAt,
          }
        : null,
      outboxPending: this.outbox?.size ?? 0,
    };
  }

  /**
   * The session a terminal is about to attach to (ttyd's attach command, the built-in endpoint): created with
   * its layout. One the control plane has not named to this agent yet was created a moment ago, and how it
   * starts (a guided session's task) comes with the next heartbeat: ask for it now, and wait a little.
   */
  async ensureForAttach(name: string): Promise<unknown> {
    const { plan, sessions } = this.o;
    if (!sessions) throw new Error("this agent has no tmux session manager");
    if (plan && !plan.knows(name)) {
      const answered = plan.nextUpdate(ATTACH_WAITS_FOR_PLAN_MS);
      this.home?.requestHeartbeat();
      await answered;
    }
    return sessions.ensure(name);
  }

  private warn(message: string): void {
    this.warnings = [...this.warnings, message.slice(0, 500)].slice(-10);
    this.log.warn({ warning: message }, "degraded");
  }

  private setLifecycle(to: AgentLifecycle, error: string | null = null): void {
    const from = this.lifecycleState;
    if (from === to) return;
    this.lifecycleState = to;
    this.append({ type: "lifecycle", at: new Date().toISOString(), payload: { from, to, error } });
    this.home?.requestHeartbeat();
  }

  private pendingLifecycle: AgentEventDraft[] = [];

  private append(draft: AgentEventDraft): void {
    if (!this.outbox) {
      if (draft.type === "lifecycle") this.pendingLifecycle.push(draft);
      return;
    }
    try {
      if (this.outbox.append(draft) === null && draft.type !== "log")
        this.log.warn({ type: draft.type }, "outbox full: event dropped");
    } catch (err) {
      this.log.error({ err: (err as Error).message, type: draft.type }, "cannot store event");
    }
  }

  private openOutbox(path: string): Outbox {
    return Outbox.open(path, {
      onCorrupt: (movedTo, reason) =>
        this.log.error({ movedTo, reason }, "event outbox was corrupt; moved aside"),
    });
  }

  private openFallbackOutbox(): Outbox {
    const dir =
      this.o.fallbackStateDir ??
      join(
        process.env.RUNTIME_DIRECTORY ?? tmpdir(),
        `berth-agent-${this.o.config.settings.BERTH_WORKSPACE_ID}`,
      );
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return this.openOutbox(join(dir, "outbox.jsonl"));
  }

  private startHome(outbox: Outbox): void {
    this.outbox = outbox;
    for (const d of this.pendingLifecycle.splice(0)) this.append(d);
    for (const { log, at } of this.earlyLogs.splice(0)) this.append({ type: "log", at, payload: log });
    const stateDir = join(outbox.path, "..");
    this.applier = new DesiredStateApplier({
      sessions: this.o.sessions ? this.gate(this.o.sessions) : null,
      ...(this.o.backup ? { backup: this.o.backup } : {}),
      ...(this.o.plan ? { plan: this.o.plan } : {}),
      ...(this.o.onboard ? { onboard: this.gateOnboard(this.o.onboard) } : {}),
      ...(this.o.restore ? { restore: this.o.restore } : {}),
      statePath: join(stateDir, "actions.json"),
      log: this.log,
    });
    this.home = new HomeLoop({
      client: new ControlPlaneClient({
        baseUrl: this.o.config.settings.BERTH_CONTROL_PLANE_URL,
        token: this.o.config.credentials["agent-token"],
      }),
      outbox,
      applier: this.applier,
      bootTrace: parseTraceparent(this.o.config.settings.BERTH_TRACEPARENT),
      status: () => this.heartbeatStatus(),
      log: this.log,
      ...(this.o.heartbeatIntervalMs ? { heartbeatIntervalMs: this.o.heartbeatIntervalMs } : {}),
    });
    this.home.start();
  }

  /** Onboarding writes into the layout: only once `ready`. */
  private gateOnboard(run: OnboardRunner): OnboardRunner {
    return async (action) => {
      if (this.lifecycleState !== "ready")
        throw new NotReadyError(`workspace is not ready (${this.lifecycleState})`);
      await run(action);
    };
  }

  /** Desired state may arrive before the layout and terminal are up: touch tmux only once `ready`. */
  private gate(sessions: SessionManager): SessionManager {
    const ready = () => {
      if (this.lifecycleState !== "ready")
        throw new NotReadyError(`workspace is not ready (${this.lifecycleState})`);
    };
    return {
      ensure: async (name) => {
        ready();
        return sessions.ensure(name);
      },
      list: async () => {
        ready();
        return sessions.list();
      },
      kill: async (name) => {
        ready();
        return sessions.kill(name);
      },
      sendKeys: async (name, text, opts) => {
        ready();
        return sessions.sendKeys(name, text, opts);
      },
    };
  }

  private async heartbeatStatus(): Promise<HeartbeatStatus> {
    if (this.o.sessions && this.lifecycleState === "ready") {
      try {
        // Only names we could have created; anything else on the socket must not break the heartbeat.
        this.lastSessions = (await this.o.sessions.list())
          .map((s) => s.name)
          .filter((n) => SESSION_NAME_RE.test(n))
          .slice(0, 64);
      } catch {
        // keep the last known list
      }
    }
    const lastError = this.startError ?? this.applier?.lastSessionError ?? null;
    const status: HeartbeatStatus = {
      lifecycle: this.lifecycleState,
      agentVersion: AGENT_VERSION,
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      startedAt: this.startedAt.toISOString(),
      lastError,
      metrics: {
        ...systemMetrics(this.paths.root),
        sessions: this.lastSessions?.length,
        previewsOpen: this.previews?.openPorts.length ?? 0,
        outboxPending: this.outbox?.size ?? 0,
        outboxDropped: this.outbox?.dropped ?? 0,
        eventsSent: this.home?.status.eventsSent ?? 0,
        notificationsEmitted: this.center?.stats.emitted ?? 0,
        notificationsDeduped: this.center?.stats.deduped ?? 0,
        homeFailures: this.home?.status.failures ?? 0,
      },
    };
    if (this.readyAt) status.readyAt = this.readyAt.toISOString();
    if (this.tailnetIp) status.tailnetIp = this.tailnetIp;
    if (this.lastSessions) status.sessions = this.lastSessions;
    if (this.previews) status.openPreviewPorts = this.previews.openPorts;
    if (this.o.plan?.version) status.environmentVersion = this.o.plan.version;
    return status;
  }
}

/** Where the agent publishes its loopback port for the Claude Code hook command (agent-owned, world-readable). */
export function agentPortFile(root: string): string {
  return join(root, "system", "agent-port");
}

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "0.0.0";
  } catch {
    return "0.0.0";
  }
}
