/**
 * Follows every `<dir>/<session>.log` (tmux pipe-pane capture, box/tmux/session-log.ts) and hands new bytes
 * to `onData`. Polling with stat rather than fs.watch: watch events are lossy across renames and unsupported
 * on some filesystems, and a 250 ms poll of a handful of files costs nothing.
 *
 * Rotation: the writer renames `<name>.log` to `<name>.log.1` and starts a new `<name>.log` at the very next
 * byte. We notice the inode change, read the old descriptor to its end, then continue with the new file, so
 * the stream stays continuous (a sequence split across the rotation still parses). A file that shrinks in
 * place was truncated: we restart at 0 and `onReset` lets the parser drop its partial state.
 * Where to start in a file already there at startup: with `statePath`, from the offset saved by the last
 * run when the file is the same (same inode, not shorter), from 0 when it replaced the one we knew, so
 * signals written while the agent was down (a restart, an upgrade) still arrive; a file never seen before
 * is followed from its end, since replaying old output would repeat old notifications.
 */
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { SESSION_NAME_RE } from "../protocol.ts";

interface Followed {
  fd: number;
  ino: number;
  offset: number;
}

export interface LogTailerOptions {
  dir: string;
  onData: (session: string, chunk: Buffer) => void;
  onReset?: (session: string) => void;
  onError?: (err: Error) => void;
  pollMs?: number;
  /** Upper bound on bytes read per file per poll, so one chatty session cannot stall the others. */
  maxReadBytes?: number;
  /** A file (under system/state) remembering how far each log was read, across agent restarts. */
  statePath?: string;
}

type SavedOffsets = Record<string, { ino: number; offset: number }>;

export class LogTailer {
  private readonly o: Required<Omit<LogTailerOptions, "onReset" | "onError" | "statePath">> &
    Pick<LogTailerOptions, "onReset" | "onError" | "statePath">;
  private saved: SavedOffsets = {};
  private savedText = "";
  private files = new Map<string, Followed>();
  private timer: NodeJS.Timeout | null = null;
  private first = true;
  private lastError = "";
  private readonly buf: Buffer;

  constructor(options: LogTailerOptions) {
    this.o = { pollMs: 250, maxReadBytes: 1024 * 1024, ...options };
    this.buf = Buffer.allocUnsafe(64 * 1024);
    if (options.statePath) {
      try {
        this.saved = JSON.parse(readFileSync(options.statePath, "utf8")) as SavedOffsets;
      } catch {
        this.saved = {}; // none yet, or unreadable: start from the ends
      }
    }
  }

  start(): void {
    if (this.timer) return;
    this.poll();
    this.timer = setInterval(() => this.poll(), this.o.pollMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.poll(); // deliver what was written up to now
    for (const f of this.files.values()) closeSync(f.fd);
    this.files.clear();
  }

  /** One pass over the directory; public so tests can step deterministically. */
  poll(): void {
    let names: string[];
    try {
      // The directory belongs to the box user; followed through a symlink it could list root's logs.
      if (lstatSync(this.o.dir, { throwIfNoEntry: false })?.isSymbolicLink())
        throw new Error(`${this.o.dir} is a symlink; not following it`);
      names = readdirSync(this.o.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.report(err as Error);
      // Files followed so far are still drained below, then closed as absent.
      names = [];
    }
    const present = new Set<string>();
    for (const name of names) {
      if (!name.endsWith(".log")) continue;
      const session = name.slice(0, -4);
      if (!SESSION_NAME_RE.test(session)) continue;
      present.add(session);
      try {
        this.follow(session, join(this.o.dir, name));
      } catch (err) {
        this.report(err as Error);
      }
    }
    for (const [session, f] of this.files) {
      if (present.has(session)) continue;
      try {
        this.drain(session, f, Number.POSITIVE_INFINITY);
      } catch (err) {
        // poll() runs from a timer and from stop(): an error thrown from here would kill the agent.
        this.report(err as Error);
      } finally {
        closeSync(f.fd);
        this.files.delete(session);
      }
    }
    this.first = false;
    this.saveOffsets();
  }

  private saveOffsets(): void {
    if (!this.o.statePath) return;
    const now: SavedOffsets = {};
    for (const [session, f] of this.files) now[session] = { ino: f.ino, offset: f.offset };
    const text = JSON.stringify(now);
    if (text === this.savedText) return;
    try {
      const tmp = `${this.o.statePath}.tmp`;
      writeFileSync(tmp, text, { mode: 0o600 });
      renameSync(tmp, this.o.statePath);
      this.savedText = text;
    } catch (err) {
      this.report(err as Error);
    }
  }

  /** Reports an error once, not on every poll while it persists. */
  private report(err: Error): void {
    if (err.message === this.lastError) return;
    this.lastError = err.message;
    this.o.onError?.(err);
  }

  private follow(session: string, path: string): void {
    // lstat: the directory is the box user's; a planted symlink (to /dev/zero, a root-only file) is skipped.
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (!st?.isFile()) return;
    let f = this.files.get(session);
    if (f && f.ino !== st.ino) {
      // Rotated: finish the old file, then the new one continues the same stream.
      this.drain(session, f, Number.POSITIVE_INFINITY);
      closeSync(f.fd);
      f = undefined;
      this.files.delete(session);
      const fd = openLog(path);
      if (fd === null) return;
      f = { fd, ino: fstatSync(fd).ino, offset: 0 };
      this.files.set(session, f);
    }
    if (!f) {
      const fd = openLog(path);
      if (fd === null) return;
      const { size, ino } = fstatSync(fd);
      const saved = this.saved[session];
      let offset = 0; // a file that appeared while we run: all of it is new
      if (this.first) {
        // Same file as last run: resume. Replaced since (rotated while we were down): all of it is new.
        // Never seen: from its end.
        if (saved) offset = saved.ino === ino && saved.offset <= size ? saved.offset : 0;
        else offset = size;
      }
      f = { fd, ino, offset };
      this.files.set(session, f);
    }
    const size = fstatSync(f.fd).size;
    if (size < f.offset) {
      f.offset = 0;
      this.o.onReset?.(session);
    }
    this.drain(session, f);
  }

  private drain(session: string, f: Followed, budget = this.o.maxReadBytes): void {
    while (budget > 0) {
      const n = readSync(f.fd, this.buf, 0, Math.min(this.buf.length, budget), f.offset);
      if (n <= 0) break;
      f.offset += n;
      budget -= n;
      this.o.onData(session, Buffer.from(this.buf.subarray(0, n)));
    }
  }
}

/** Opens a capture file for reading without following a symlink; null if it is not a regular file. */
function openLog(path: string): number | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null; // gone, or a symlink
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    return null;
  }
  return fd;
}
