/**
 * The agent's event outbox: a journal under `system/state/` that numbers events and keeps every event until
 * the control plane acknowledges it, across agent and control-plane restarts (see box/protocol.ts).
 *
 * File format, one JSON object per line:
 *   {"t":"s","nextSeq":N,"ackedThrough":M}   snapshot header after a compaction; N is the next line's seq
 *   {"t":"e","e":<AgentEvent>}                an event appended
 *   {"t":"a","through":N}                     events up to N acknowledged
 * Appends are fsync'ed, so an event the agent has accepted survives a crash; a torn last line (the crash
 * happened mid-write) is dropped on load. The file is compacted (rewritten to a temp file and renamed)
 * when acknowledged lines dominate it.
 */
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import { type AgentEvent, type AgentEventDraft, agentEvent, LIMITS } from "../protocol.ts";

export interface OutboxOptions {
  /** Pending events kept before new `log` events are dropped; other events are kept up to twice this. */
  maxPending?: number;
  /** fsync every append (default true); tests of throughput may turn it off. */
  sync?: boolean;
  /** Called when a corrupt journal was moved aside, so the caller can log it. */
  onCorrupt?: (movedTo: string, reason: string) => void;
}

export class OutboxCorruptError extends Error {
  override name = "OutboxCorruptError";
}

type Line =
  | { t: "s"; nextSeq: number; ackedThrough: number }
  | { t: "e"; e: AgentEvent }
  | { t: "a"; through: number };

export class Outbox {
  readonly path: string;
  private pending: AgentEvent[] = [];
  private nextSeq = 1;
  private ackedThroughLocal = 0;
  private fd: number | undefined;
  private linesSinceCompact = 0;
  private readonly maxPending: number;
  private readonly sync: boolean;
  private droppedCount = 0;
  /** Highest seq that may have reached the control plane; anything above was never sent under its number. */
  private maybeSentThrough = 0;
  private listeners = new Set<() => void>();

  private constructor(path: string, options: OutboxOptions) {
    this.path = path;
    this.maxPending = options.maxPending ?? 10_000;
    this.sync = options.sync ?? true;
    mkdirSync(dirname(path), { recursive: true });
    this.load(options);
    this.fd ??= openSync(path, "a", 0o600);
    this.maybeSentThrough = this.lastSeq; // a previous run may have sent any of these
  }

  static open(path: string, options: OutboxOptions = {}): Outbox {
    return new Outbox(path, options);
  }

  get size(): number {
    return this.pending.length;
  }
  get dropped(): number {
    return this.droppedCount;
  }
  get ackedThrough(): number {
    return this.ackedThroughLocal;
  }
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** Registers a callback run after every append (the sender wakes up on it). */
  onAppend(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Numbers, validates and durably stores one event. Returns null when the event was dropped because the
   * outbox is full (log events first; others only past twice the limit).
   */
  append(draft: AgentEventDraft): AgentEvent | null {
    const limit = draft.type === "log" ? this.maxPending : this.maxPending * 2;
    if (this.pending.length >= limit) {
      this.droppedCount++;
      return null;
    }
    const parsed = agentEvent.safeParse({ ...draft, seq: this.nextSeq });
    if (!parsed.success)
      throw new TypeError(`invalid ${draft.type} event: ${parsed.error.issues[0]?.message}`);
    this.write({ t: "e", e: parsed.data });
    this.pending.push(parsed.data);
    this.nextSeq++;
    for (const l of this.listeners) l();
    return parsed.data;
  }

  /** The oldest pending events, contiguous, bounded by count and by serialized size. */
  peek(maxEvents: number = LIMITS.maxEventsPerBatch, maxBytes = LIMITS.maxRequestBytes - 1024): AgentEvent[] {
    const out: AgentEvent[] = [];
    let bytes = 16;
    for (const e of this.pending) {
      if (out.length >= maxEvents) break;
      const size = Buffer.byteLength(JSON.stringify(e)) + 1;
      if (out.length > 0 && bytes + size > maxBytes) break;
      out.push(e);
      bytes += size;
    }
    return out;
  }

  /** The sender calls this before a request leaves, so `reconcile` knows which numbers the far side may know. */
  markSent(throughSeq: number): void {
    this.maybeSentThrough = Math.max(this.maybeSentThrough, throughSeq);
  }

  /**
   * Applies the control plane's `ackedThrough`. At or ahead of our oldest pending event it drops what was
   * acknowledged. Behind it (a new instance, a restored control-plane database) it renumbers the pending
   * events to follow on, because the control plane has never seen them under those numbers.
   * Returns how many events were dropped as acknowledged.
   */
  reconcile(remoteAckedThrough: number): { acked: number; renumbered: boolean } {
    const before = this.pending.length;
    // An event never sent cannot have been applied, even if the far side has seen its number before
    // (our journal was lost): keep it, to be renumbered below.
    this.pending = this.pending.filter((e) => e.seq > remoteAckedThrough || e.seq > this.maybeSentThrough);
    const acked = before - this.pending.length;
    const first = this.pending[0]?.seq ?? this.nextSeq;
    let renumbered = false;
    if (first !== remoteAckedThrough + 1) {
      this.pending = this.pending.map((e, i) => ({ ...e, seq: remoteAckedThrough + 1 + i }));
      this.nextSeq = remoteAckedThrough + 1 + this.pending.length;
      this.maybeSentThrough = remoteAckedThrough;
      renumbered = true;
    }
    this.ackedThroughLocal = remoteAckedThrough;
    if (renumbered) this.compact();
    else if (acked > 0) {
      this.write({ t: "a", through: remoteAckedThrough });
      if (this.linesSinceCompact > 1000 && this.linesSinceCompact > this.pending.length * 2) this.compact();
    }
    return { acked, renumbered };
  }

  /**
   * Replaces one pending event with a log event under the same seq: used when the control plane rejects an
   * event as invalid, so the sequence stays gap-free and the rejection itself is visible centrally.
   */
  replaceWithRejection(seq: number, reason: string): void {
    const i = this.pending.findIndex((e) => e.seq === seq);
    if (i < 0) return;
    const original = this.pending[i]!;
    this.pending[i] = agentEvent.parse({
      seq,
      at: original.at,
      type: "log",
      payload: {
        level: "error",
        msg: `control plane rejected ${original.type} event ${seq}`.slice(0, LIMITS.maxLogMessage),
        fields: { reason: reason.slice(0, LIMITS.maxFieldValue) },
      },
    });
    this.compact();
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private write(line: Line): void {
    if (this.fd === undefined) throw new Error(`outbox ${this.path} is closed`);
    const bytes = Buffer.from(`${JSON.stringify(line)}\n`);
    const end = fstatSync(this.fd).size;
    try {
      writeAll(this.fd, bytes);
      if (this.sync) fdatasyncSync(this.fd);
    } catch (err) {
      // Take back a line that is stored only in part, or not durably: the next line would follow it, and the
      // whole journal would load as corrupt (or with a seq twice) after a restart.
      try {
        ftruncateSync(this.fd, end);
      } catch {
        // The journal keeps a torn line; still refuse the event rather than claim it is stored.
      }
      throw err;
    }
    this.linesSinceCompact++;
  }

  /** Rewrites the journal as a snapshot plus the pending events, atomically. */
  private compact(): void {
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, "w", 0o600);
    try {
      // `nextSeq` in a header is the seq the following event line must carry.
      const first = this.pending[0]?.seq ?? this.nextSeq;
      const header: Line = { t: "s", nextSeq: first, ackedThrough: this.ackedThroughLocal };
      let text = `${JSON.stringify(header)}\n`;
      for (const e of this.pending) text += `${JSON.stringify({ t: "e", e } satisfies Line)}\n`;
      writeAll(fd, Buffer.from(text)); // a short write must not become the journal
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    syncDir(dirname(this.path));
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = openSync(this.path, "a", 0o600);
    this.linesSinceCompact = this.pending.length + 1;
  }

  private load(options: OutboxOptions): void {
    if (!existsSync(this.path)) return;
    const text = readFileSync(this.path, "utf8");
    try {
      this.replay(text);
    } catch (err) {
      // A corrupt journal must not keep the agent from starting; keep the file for inspection.
      const movedTo = `${this.path}.corrupt-${Date.now()}`;
      renameSync(this.path, movedTo);
      this.pending = [];
      this.nextSeq = 1;
      this.ackedThroughLocal = 0;
      options.onCorrupt?.(movedTo, (err as Error).message);
    }
  }

  private replay(text: string): void {
    const lines = text.split("\n");
    const complete = lines.slice(0, -1); // the last piece is "" or a torn write
    for (const [i, raw] of complete.entries()) {
      if (raw === "") continue;
      let line: Line;
      try {
        line = JSON.parse(raw) as Line;
      } catch {
        throw new OutboxCorruptError(`line ${i + 1} is not JSON`);
      }
      if (line.t === "s") {
        this.nextSeq = line.nextSeq;
        this.ackedThroughLocal = line.ackedThrough;
        this.pending = [];
      } else if (line.t === "e") {
        const event = agentEvent.parse(line.e);
        if (event.seq !== this.nextSeq)
          throw new OutboxCorruptError(`line ${i + 1}: seq ${event.seq}, expected ${this.nextSeq}`);
        this.pending.push(event);
        this.nextSeq = event.seq + 1;
      } else if (line.t === "a") {
        this.pending = this.pending.filter((e) => e.seq > line.through);
        this.ackedThroughLocal = Math.max(this.ackedThroughLocal, line.through);
      } else throw new OutboxCorruptError(`line ${i + 1}: unknown record`);
    }
    this.linesSinceCompact = complete.length;
    if (!text.endsWith("\n") && text.length > 0) {
      // Drop the torn tail now so the next append starts on a fresh line.
      this.compact();
    }
  }
}

/** A full disk stores part of a write and says so only in the count (the next write fails): write it all. */
function writeAll(fd: number, bytes: Buffer): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done);
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  }
}
