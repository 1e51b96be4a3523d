/**
 * The agent's calls home: heartbeats (carrying status, metrics and finished actions; returning desired
 * state) and event batches from the outbox. One request at a time, so every `ackedThrough` the agent sees
 * is consistent with what it already sent (see box/protocol.ts). Failures back off exponentially with
 * jitter; an auth failure is surfaced through `status` and `onAuthFailure` and retried slowly.
 */
import type { Logger } from "pino";
import type { AgentEvent, HeartbeatRequestInput, HeartbeatResponse } from "../protocol.ts";
import type { TraceContext } from "../telemetry/trace.ts";
import { AgentAuthError, AgentRequestRejectedError, type ControlPlaneClient } from "./client.ts";
import type { DesiredStateApplier } from "./desired-state.ts";
import type { Outbox } from "./outbox.ts";

export type HeartbeatStatus = Omit<HeartbeatRequestInput, "completed">;

export interface HomeLoopOptions {
  client: ControlPlaneClient;
  outbox: Outbox;
  applier: DesiredStateApplier;
  /** Builds the heartbeat body (everything but `completed`, which the loop adds). */
  status: () => HeartbeatStatus | Promise<HeartbeatStatus>;
  log: Logger;
  heartbeatIntervalMs?: number;
  /** How long to gather events before sending a batch. */
  batchDelayMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  onAuthFailure?: (err: AgentAuthError) => void;
  /** The build's trace context from boot (BERTH_TRACEPARENT): heartbeats join it until one succeeds. */
  bootTrace?: TraceContext | null;
}

export interface HomeStatus {
  /** The control plane answered our last request. */
  connected: boolean;
  /** At least one heartbeat succeeded, so event numbering is in step with the control plane. */
  synced: boolean;
  authFailed: boolean;
  lastError: string | null;
  lastHeartbeatAt: Date | null;
  failures: number;
  eventsSent: number;
}

export class HomeLoop {
  readonly status: HomeStatus = {
    connected: false,
    synced: false,
    authFailed: false,
    lastError: null,
    lastHeartbeatAt: null,
    failures: 0,
    eventsSent: 0,
  };
  private readonly o: Required<Omit<HomeLoopOptions, "onAuthFailure" | "bootTrace">> &
    Pick<HomeLoopOptions, "onAuthFailure">;
  private bootTrace: TraceContext | null;
  private heartbeatInterval: number;
  private heartbeatDueAt = 0;
  private heartbeatRequested = false;
  private stopped = true;
  private running: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  /** Set while waiting out a failure: new events must not cut the backoff short. */
  private backingOff = false;
  private maxBatch = Number.POSITIVE_INFINITY;
  /** The seq whose event was last replaced with a rejection log line. */
  private replacedSeq: number | null = null;
  private unsubscribe: (() => void) | null = null;
  /** Serializes every request: the loop and `flush` never talk to the control plane at the same time. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(options: HomeLoopOptions) {
    this.o = {
      heartbeatIntervalMs: 10_000,
      batchDelayMs: 200,
      minBackoffMs: 500,
      maxBackoffMs: 30_000,
      ...options,
    };
    this.heartbeatInterval = this.o.heartbeatIntervalMs;
    this.bootTrace = options.bootTrace ?? null;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.unsubscribe = this.o.outbox.onAppend(() => this.poke());
    this.running = this.run();
  }

  /** Sends a heartbeat as soon as possible (a lifecycle change should not wait for the next tick). */
  requestHeartbeat(): void {
    // A heartbeat already in flight carries the status from before this request; send another after it.
    this.heartbeatRequested = true;
    this.heartbeatDueAt = 0;
    this.poke(true);
  }

  /** Stops the loop after the request in flight, if any. From then on, heartbeats apply no desired state. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.poke(true);
    await this.running;
    await this.chain.catch(() => {});
  }

  /**
   * Heartbeat once (so the final lifecycle reaches home) and send every pending event, until the outbox is
   * empty or the deadline passes. Returns whether the outbox was drained.
   */
  async flush(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    let backoff = this.o.minBackoffMs;
    let heartbeatDone = false;
    while (Date.now() < deadline) {
      try {
        if (!heartbeatDone) {
          await this.serial(() => this.heartbeat());
          heartbeatDone = true;
        }
        if (this.o.outbox.size === 0) return true;
        await this.serial(() => this.sendBatch());
        backoff = this.o.minBackoffMs;
      } catch (err) {
        this.noteFailure(err);
        if (err instanceof AgentAuthError) return false;
        await sleep(Math.min(backoff, Math.max(0, deadline - Date.now())));
        backoff = Math.min(backoff * 2, this.o.maxBackoffMs);
      }
    }
    return this.o.outbox.size === 0;
  }

  private poke(force = false): void {
    if (this.backingOff && !force) return;
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => {});
    return next;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let delay: number;
      try {
        if (Date.now() >= this.heartbeatDueAt) await this.serial(() => this.heartbeat());
        if (this.status.synced && this.o.outbox.size > 0) await this.serial(() => this.sendBatch());
        this.status.failures = 0;
        const untilHeartbeat = Math.max(0, this.heartbeatDueAt - Date.now());
        delay = this.status.synced && this.o.outbox.size > 0 ? 0 : untilHeartbeat;
        this.backingOff = false;
      } catch (err) {
        this.backingOff = true;
        this.noteFailure(err);
        const base = err instanceof AgentAuthError ? this.o.maxBackoffMs : this.o.minBackoffMs;
        const exp = Math.min(this.o.maxBackoffMs, base * 2 ** Math.min(this.status.failures - 1, 16));
        delay = exp / 2 + Math.random() * (exp / 2);
      }
      if (this.stopped) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(timer);
          // A burst of appends becomes one batch rather than one request per event.
          setTimeout(resolve, this.o.batchDelayMs);
        };
      });
      this.wake = null;
    }
  }

  private async heartbeat(): Promise<void> {
    this.heartbeatRequested = false;
    const body: HeartbeatRequestInput = {
      ...(await this.o.status()),
      completed: this.o.applier.completedToReport(),
    };
    const res = await this.o.client.heartbeat(body, this.bootTrace ?? undefined);
    this.bootTrace = null;
    this.noteSuccess();
    this.status.lastHeartbeatAt = new Date();
    if (res.heartbeatIntervalSeconds) this.heartbeatInterval = res.heartbeatIntervalSeconds * 1000;
    this.heartbeatDueAt = this.heartbeatRequested ? 0 : Date.now() + this.heartbeatInterval;
    const { renumbered } = this.o.outbox.reconcile(res.eventsAckedThrough);
    if (renumbered)
      this.o.log.info(
        { ackedThrough: res.eventsAckedThrough, pending: this.o.outbox.size },
        "control plane is behind our outbox (new instance or restored state): renumbered pending events",
      );
    this.status.synced = true;
    this.o.applier.ack(res.acks.completed);
    // Stopped (shutting down): the last heartbeats only report. A backup or restore started now would be
    // killed with the agent half-way, and the box should not change under an agent on its way out.
    if (!this.stopped) await this.applyDesired(res);
  }

  private async applyDesired(res: HeartbeatResponse): Promise<void> {
    try {
      await this.o.applier.apply(res);
    } catch (err) {
      this.o.log.error({ err: (err as Error).message }, "applying desired state failed");
    }
  }

  private async sendBatch(): Promise<void> {
    const batch: AgentEvent[] = this.o.outbox.peek(Math.min(500, this.maxBatch));
    if (batch.length === 0) return;
    this.o.outbox.markSent(batch.at(-1)!.seq);
    try {
      const res = await this.o.client.sendEvents({ events: batch });
      this.noteSuccess();
      this.o.outbox.reconcile(res.ackedThrough);
      this.status.eventsSent += Math.max(0, res.ackedThrough - batch[0]!.seq + 1);
      this.maxBatch = Number.POSITIVE_INFINITY;
    } catch (err) {
      if (!(err instanceof AgentRequestRejectedError)) throw err;
      // It refuses even the log line that already stands in for the event: there is nothing left to
      // narrow down or replace. Retry later, with backoff, instead of replacing it again at once, forever.
      if (batch.length === 1 && batch[0]!.seq === this.replacedSeq) throw err;
      // The control plane refuses the content. Narrow it down to the one event it refuses and replace
      // that event with a log line under the same seq, so the sequence moves on without a gap.
      this.noteSuccess();
      if (batch.length > 1) {
        this.maxBatch = Math.ceil(batch.length / 2);
        this.o.log.warn({ status: err.status, size: batch.length }, "event batch rejected; retrying smaller");
      } else {
        this.o.log.error({ seq: batch[0]!.seq, reason: err.message }, "event rejected by control plane");
        this.o.outbox.replaceWithRejection(batch[0]!.seq, err.message);
        this.replacedSeq = batch[0]!.seq;
        this.maxBatch = Number.POSITIVE_INFINITY;
      }
    }
  }

  private noteSuccess(): void {
    if (this.status.authFailed) this.o.log.info("control plane accepts the agent token again");
    this.status.connected = true;
    this.status.authFailed = false;
    this.status.lastError = null;
  }

  private noteFailure(err: unknown): void {
    const message = (err as Error).message ?? String(err);
    this.status.connected = false;
    this.status.failures++;
    this.status.lastError = message;
    if (err instanceof AgentAuthError) {
      if (!this.status.authFailed) {
        this.o.log.error({ status: err.status }, message);
        this.o.onAuthFailure?.(err);
      }
      this.status.authFailed = true;
    } else if (this.status.failures === 1 || this.status.failures % 20 === 0) {
      this.o.log.warn(
        { failures: this.status.failures, err: message },
        "call home failed; retrying with backoff",
      );
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
