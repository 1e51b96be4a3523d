/**
 * Server-Sent Events for a build's log: replays from the client's `Last-Event-ID` (the line's seq), then
 * follows live lines announced by NOTIFY until the build finishes. A reconnecting client misses nothing
 * and sees nothing twice.
 */
import { PassThrough } from "node:stream";
import { redactAddresses } from "../../platform/redact.ts";
import type { BuildStore } from "../../store/builds.ts";
import { BUILD_LOG_CHANNEL } from "../../store/channels.ts";
import type { PgListener } from "../../store/listener.ts";

const PAGE = 500;
const KEEPALIVE_MS = 15_000;

export function sseFrame(event: string, data: unknown, id?: number): string {
  return `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** Reads through `builds`, the follower's authorized view: lines of a build it cannot see never arrive. */
export function followBuildLog(
  builds: Pick<BuildStore, "logLines" | "status" | "countLogLinesAfter">,
  listener: PgListener,
  buildId: string,
  afterSeq: number,
  onClose: (cb: () => void) => void,
): PassThrough {
  const out = new PassThrough();
  let closed = false;
  // A NOTIFY for this build since the follower last started a read: it reads again instead of waiting.
  let notified = false;
  // The wait in progress (for a NOTIFY, or for a full buffer to drain), and whether a NOTIFY ends it.
  let endWait: (() => void) | null = null;
  let waitingForNotify = false;
  const wake = () => {
    notified = true;
    if (waitingForNotify) endWait?.();
  };
  onClose(() => {
    closed = true;
    endWait?.();
  });
  /** Until `start`'s event calls `done`, or the client leaves (or, waiting for a NOTIFY, one came). */
  const wait = (start: (done: () => void) => () => void, forNotify: boolean) =>
    new Promise<void>((resolve) => {
      if (closed || (forNotify && notified)) return resolve();
      let stop = () => {};
      const done = () => {
        stop();
        endWait = null;
        waitingForNotify = false;
        resolve();
      };
      stop = start(done);
      endWait = done;
      waitingForNotify = forNotify;
    });
  const nextNotify = () =>
    wait((done) => {
      const t = setTimeout(() => {
        if (!closed && !out.writableNeedDrain) out.write(": keepalive\n\n");
        done();
      }, KEEPALIVE_MS);
      return () => clearTimeout(t);
    }, true);
  // A client that does not read holds the follower here, not the whole log in the stream's buffer.
  const write = async (chunk: string) => {
    if (out.write(chunk) || out.destroyed) return;
    await wait((done) => {
      out.once("drain", done);
      out.once("close", done);
      return () => {
        out.off("drain", done);
        out.off("close", done);
      };
    }, false);
  };

  void (async () => {
    const unsubscribe = await listener.subscribe(BUILD_LOG_CHANNEL, (payload) => {
      if (payload === buildId && !closed) wake();
    });
    let cursor = afterSeq;
    try {
      out.write("retry: 2000\n\n");
      while (!closed && !out.destroyed) {
        notified = false;
        const rows = await builds.logLines(buildId, cursor, PAGE);
        for (const r of rows) {
          if (closed || out.destroyed) break;
          await write(
            sseFrame(
              "line",
              { seq: r.seq, at: r.at, level: r.level, stage: r.stage, message: redactAddresses(r.message) },
              r.seq,
            ),
          );
          cursor = r.seq;
        }
        if (closed || out.destroyed) break;
        if (rows.length === PAGE) continue;
        const status = await builds.status(buildId);
        if (status !== "pending" && status !== "running") {
          // Lines written just before the status flip are caught by one more read.
          if ((await builds.countLogLinesAfter(buildId, cursor)) > 0) continue;
          out.write(sseFrame("end", { status }));
          break;
        }
        await nextNotify();
      }
    } catch {
      if (!closed) out.write(sseFrame("error", { message: "log stream interrupted; reconnect to resume" }));
    } finally {
      unsubscribe();
      out.end();
    }
  })();
  return out;
}
