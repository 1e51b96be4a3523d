/**
 * Server-Sent Events for a build's log: replays from the client's `Last-Event-ID` (the line's seq), then
 * follows live lines announced by NOTIFY until the build finishes. A reconnecting client misses nothing
 * and sees nothing twice.
 */
import { PassThrough } from "node:stream";
import type pg from "pg";
import { redactAddresses } from "../../platform/redact.ts";
import type { PgListener } from "../../store/listener.ts";
import { BUILD_LOG_CHANNEL } from "./build-log.ts";

const PAGE = 500;
const KEEPALIVE_MS = 15_000;

interface LogRow {
  seq: number;
  at: Date;
  level: string;
  stage: string | null;
  message: string;
}

export function sseFrame(event: string, data: unknown, id?: number): string {
  return `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

export function followBuildLog(
  pool: pg.Pool,
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
        const { rows } = await pool.query<LogRow>(
          "SELECT seq, at, level, stage, message FROM workspace_build_logs WHERE build_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
          [buildId, cursor, PAGE],
        );
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
        const { rows: b } = await pool.query<{ status: string }>(
          "SELECT status FROM workspace_builds WHERE id = $1",
          [buildId],
        );
        const status = b[0]?.status;
        if (status !== "pending" && status !== "running") {
          // Lines written just before the status flip are caught by one more read.
          const { rows: tail } = await pool.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM workspace_build_logs WHERE build_id = $1 AND seq > $2",
            [buildId, cursor],
          );
          if (tail[0]!.n > 0) continue;
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
