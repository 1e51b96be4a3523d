/**
 * Ships the agent's own log lines to the control plane as `log` events through the outbox, so they reach
 * the central store in batches with the same exactly-once guarantee as everything else. It is a pino
 * destination: the agent logs once, to stdout (journald, or the local driver's pipe) and here.
 * A token bucket bounds what is shipped (a crash loop must not flood the outbox); what it holds back is
 * counted and reported in one line once shipping resumes.
 */
import { Writable } from "node:stream";
import { LIMITS, type LogPayload, PINO_LEVELS } from "../protocol.ts";

const SKIP = new Set(["level", "time", "msg", "pid", "hostname", "v"]);

export interface LogShipperOptions {
  publish: (log: LogPayload, at: string) => void;
  /** Lines below this pino level are not shipped (default 30, info). */
  minLevel?: number;
  /** Sustained lines per minute, and the burst allowance. */
  perMinute?: number;
  burst?: number;
}

export class LogShipper extends Writable {
  private readonly publish: LogShipperOptions["publish"];
  private readonly minLevel: number;
  private readonly perMs: number;
  private readonly burst: number;
  private tokens: number;
  private last = Date.now();
  private suppressed = 0;
  private pending = "";

  constructor(options: LogShipperOptions) {
    super({ decodeStrings: false });
    this.publish = options.publish;
    this.minLevel = options.minLevel ?? 30;
    this.perMs = (options.perMinute ?? 120) / 60_000;
    this.burst = options.burst ?? 60;
    this.tokens = this.burst;
  }

  get suppressedCount(): number {
    return this.suppressed;
  }

  override _write(chunk: string | Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.pending += chunk.toString();
    let nl = this.pending.indexOf("\n");
    while (nl >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      this.handle(line);
      nl = this.pending.indexOf("\n");
    }
    done();
  }

  private handle(line: string): void {
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // not a pino line
    }
    const level = typeof rec.level === "number" ? rec.level : 30;
    if (level < this.minLevel) return;
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.perMs);
    this.last = now;
    if (this.tokens < 1) {
      this.suppressed++;
      return;
    }
    this.tokens--;
    const at = typeof rec.time === "number" ? new Date(rec.time).toISOString() : new Date(now).toISOString();
    if (this.suppressed > 0 && this.tokens >= 1) {
      this.tokens--;
      this.publish(
        {
          level: "warn",
          msg: `${this.suppressed} agent log lines were not shipped (rate limit)`,
          fields: {},
        },
        at,
      );
      this.suppressed = 0;
    }
    this.publish(
      {
        level: PINO_LEVELS[level] ?? "info",
        msg: String(rec.msg ?? "").slice(0, LIMITS.maxLogMessage),
        fields: fields(rec),
      },
      at,
    );
  }
}

function fields(rec: Record<string, unknown>): LogPayload["fields"] {
  const out: LogPayload["fields"] = {};
  let n = 0;
  for (const [k, v] of Object.entries(rec)) {
    if (SKIP.has(k) || n >= LIMITS.maxLogFields) continue;
    const key = k.slice(0, 64);
    if (v === null || typeof v === "number" || typeof v === "boolean") out[key] = v;
    else if (typeof v === "string") out[key] = v.slice(0, LIMITS.maxFieldValue);
    else out[key] = JSON.stringify(v).slice(0, LIMITS.maxFieldValue);
    n++;
  }
  return out;
}
