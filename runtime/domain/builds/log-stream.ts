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
  let wake: () => void = () => {};
  onClose(() => {
    closed = true;
    wake();
  });

  void (async () => {
    const unsubscribe = await listener.subscribe(BUILD_LOG_CHANNEL, (payload) => {
      if (payload === buildId) wake();
    });
    let cursor = afterSeq;
    try {
      out.write("retry: 2000\n\n");
      while (!closed) {
        const rows = await builds.logLines(buildId, cursor, PAGE);
        for (const r of rows) {
          out.write(
            sseFrame(
              "line",
              { seq: r.seq, at: r.at, level: r.level, stage: r.stage, message: redactAddresses(r.message) },
              r.seq,
            ),
          );
          cursor = r.seq;
        }
        if (rows.length === PAGE) continue;
        const status = await builds.status(buildId);
        if (status !== "pending" && status !== "running") {
          // Lines written just before the status flip are caught by one more read.
          if ((await builds.countLogLinesAfter(buildId, cursor)) > 0) continue;
          out.write(sseFrame("end", { status }));
          break;
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            if (!closed) out.write(": keepalive\n\n");
            resolve();
          }, KEEPALIVE_MS);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
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
