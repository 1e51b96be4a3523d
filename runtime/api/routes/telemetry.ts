import { z } from "zod";
import { diskUsedPercent } from "../../domain/telemetry/record.ts";
import type { TelemetrySample } from "../../store/telemetry.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { doc, timestamp } from "../openapi/doc.ts";

const figures = {
  loadAvg1: z.number().nullable().describe("1-minute load average"),
  memTotalBytes: z.number().nullable(),
  memAvailableBytes: z.number().nullable(),
  memUsedPercent: z.number().nullable().describe("(total - available) / total, in percent"),
  diskTotalBytes: z.number().nullable().describe("the workspace volume's size"),
  diskFreeBytes: z.number().nullable(),
  diskUsedPercent: z.number().nullable(),
};

const Latest = z.object({
  sampledAt: timestamp,
  ...figures,
  diskWarning: z
    .boolean()
    .describe("usage is at or above the threshold, or the owner was warned and it has not fallen back yet"),
});

const Point = z.object({ minute: timestamp, ...figures });

const TelemetryAnswer = z.object({
  latest: Latest.nullable().describe("null until the box's agent has sent a heartbeat"),
  history: z.array(Point).describe("one point per minute, the last 24 h, oldest first"),
  diskWarnPercent: z.number().describe("the disk-nearly-full threshold (BERTH_DISK_WARN_PERCENT)"),
});

const round = (n: number | null) => (n === null ? null : Math.round(n * 10) / 10);

function present(s: Omit<TelemetrySample, "sampledAt">) {
  const mem =
    s.memTotalBytes && s.memAvailableBytes !== null
      ? (100 * Math.max(0, s.memTotalBytes - s.memAvailableBytes)) / s.memTotalBytes
      : null;
  return {
    loadAvg1: s.loadAvg1 === null ? null : Math.round(s.loadAvg1 * 100) / 100,
    memTotalBytes: s.memTotalBytes,
    memAvailableBytes: s.memAvailableBytes,
    memUsedPercent: round(mem),
    diskTotalBytes: s.diskTotalBytes,
    diskFreeBytes: s.diskFreeBytes,
    diskUsedPercent: round(
      diskUsedPercent({
        diskTotalBytes: s.diskTotalBytes ?? undefined,
        diskFreeBytes: s.diskFreeBytes ?? undefined,
      }),
    ),
  };
}

/** A workspace's box telemetry (from its agent's heartbeats): the latest sample and the last 24 h. */
export function telemetryRoutes(router: ApiRouter, deps: AppDeps): void {
  router.get(
    "/api/v1/workspaces/:id/telemetry",
    doc({
      summary:
        "Read a workspace box's load, memory and disk: the latest sample and one point a minute for 24 h",
      responses: { 200: TelemetryAnswer },
      errors: [404],
    }),
    async (ctx) => {
      const threshold = deps.config.diskWarnPercent;
      const { latest, history } = await ctx.state.scope.telemetry.ofWorkspace(ctx.params.id!);
      const now = latest ? present(latest) : null;
      ctx.body = {
        latest:
          latest && now
            ? {
                sampledAt: latest.sampledAt,
                ...now,
                diskWarning: latest.diskWarnedAt !== null || (now.diskUsedPercent ?? 0) >= threshold,
              }
            : null,
        history: history.map((p) => ({ minute: p.minute, ...present(p) })),
        diskWarnPercent: threshold,
      };
    },
  );
}
