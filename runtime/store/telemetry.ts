/**
 * Box telemetry through the authorization layer: the agent records its own instance's samples (latest row
 * per workspace, one history row per minute, 24 h kept) and moves the disk-nearly-full alert's state; the
 * owner reads their workspace's; the `metrics` system actor reads fleet-wide aggregates and prunes.
 */
import { and, asc, eq, gte, isNotNull, isNull, lt, ne, sql } from "drizzle-orm";
import { NotFound } from "../platform/errors.ts";
import type { Access } from "./access.ts";
import { boxTelemetry, boxTelemetryHistory, workspaceInstances, workspaces } from "./schema.ts";

type FigureName = "loadAvg1" | "memTotalBytes" | "memAvailableBytes" | "diskTotalBytes" | "diskFreeBytes";

/** The figure columns both telemetry tables hold (schema.ts `telemetryFigures()`), as a select list. */
function figures<T extends Record<FigureName, unknown>>(table: T): Pick<T, FigureName> {
  const { loadAvg1, memTotalBytes, memAvailableBytes, diskTotalBytes, diskFreeBytes } = table;
  return { loadAvg1, memTotalBytes, memAvailableBytes, diskTotalBytes, diskFreeBytes };
}

/** How long the per-minute history is kept. */
export const TELEMETRY_HISTORY_MS = 24 * 3600_000;

export interface TelemetrySample {
  sampledAt: Date;
  loadAvg1: number | null;
  memTotalBytes: number | null;
  memAvailableBytes: number | null;
  diskTotalBytes: number | null;
  diskFreeBytes: number | null;
}

export interface LatestTelemetry extends TelemetrySample {
  instanceId: string;
  diskWarnedAt: Date | null;
}

export interface TelemetryPoint extends Omit<TelemetrySample, "sampledAt"> {
  minute: Date;
}

/** One live box's latest figures, for the fleet aggregates of /metrics. */
export interface FleetSample extends TelemetrySample {
  workspaceId: string;
}

export interface FleetSummary {
  reporting: number;
  /** Boxes that reported their disk (the `+Inf` bucket of `diskAtMost`). */
  diskKnown: number;
  overThreshold: number;
  diskMax: number;
  memoryMax: number;
  loadMax: number;
  diskAtMost: Array<{ le: number; boxes: number }>;
}

/** What the disk alert did on this sample. */
export type DiskAlertChange = "warned" | "rearmed" | null;

export class TelemetryStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /**
   * The agent's sample for its own instance: replaces the workspace's latest row, writes this minute's
   * history row (the minute's newest wins), prunes the workspace's history older than 24 h, and moves the
   * disk alert: `over` arms it into "warned" once (the returned change is "warned" only for the sample that
   * crossed), `under` (below threshold minus hysteresis) re-arms it. The alert's test-and-set is one
   * conditional UPDATE, so concurrent heartbeats and replicas warn once.
   */
  async record(sample: TelemetrySample, disk: { over: boolean; under: boolean }): Promise<DiskAlertChange> {
    this.#access.require("telemetry.report", "workspace");
    const { instanceId, workspaceId } = this.#access.agent("workspace");
    const values = { ...sample, instanceId };
    const minute = new Date(Math.floor(sample.sampledAt.getTime() / 60_000) * 60_000);
    return this.#access.db.transaction(async (tx) => {
      await tx
        .insert(boxTelemetry)
        .values({ ...values, workspaceId })
        .onConflictDoUpdate({ target: boxTelemetry.workspaceId, set: values });
      const { sampledAt: _, ...point } = values;
      await tx
        .insert(boxTelemetryHistory)
        .values({ ...point, workspaceId, minute })
        .onConflictDoUpdate({
          target: [boxTelemetryHistory.workspaceId, boxTelemetryHistory.minute],
          set: point,
        });
      await tx
        .delete(boxTelemetryHistory)
        .where(
          and(
            eq(boxTelemetryHistory.workspaceId, workspaceId),
            lt(boxTelemetryHistory.minute, new Date(sample.sampledAt.getTime() - TELEMETRY_HISTORY_MS)),
          ),
        );
      const mine = eq(boxTelemetry.workspaceId, workspaceId);
      if (disk.over) {
        const warned = await tx
          .update(boxTelemetry)
          .set({ diskWarnedAt: sample.sampledAt })
          .where(and(mine, isNull(boxTelemetry.diskWarnedAt)))
          .returning({ at: boxTelemetry.diskWarnedAt });
        return warned.length ? "warned" : null;
      }
      if (disk.under) {
        const rearmed = await tx
          .update(boxTelemetry)
          .set({ diskWarnedAt: null })
          .where(and(mine, isNotNull(boxTelemetry.diskWarnedAt)))
          .returning({ id: boxTelemetry.workspaceId });
        return rearmed.length ? "rearmed" : null;
      }
      return null;
    });
  }

  /** A workspace's latest sample (null before its first) and its last 24 h, oldest first. */
  async ofWorkspace(
    workspaceId: string,
    now = new Date(),
  ): Promise<{ latest: LatestTelemetry | null; history: TelemetryPoint[] }> {
    await this.#access.requireWorkspace("telemetry.read", "workspace", workspaceId);
    const [latest] = await this.#access.db
      .select({
        instanceId: boxTelemetry.instanceId,
        sampledAt: boxTelemetry.sampledAt,
        ...figures(boxTelemetry),
        diskWarnedAt: boxTelemetry.diskWarnedAt,
      })
      .from(boxTelemetry)
      .where(eq(boxTelemetry.workspaceId, workspaceId));
    const history = await this.#access.db
      .select({
        minute: boxTelemetryHistory.minute,
        ...figures(boxTelemetryHistory),
      })
      .from(boxTelemetryHistory)
      .where(
        and(
          eq(boxTelemetryHistory.workspaceId, workspaceId),
          gte(boxTelemetryHistory.minute, new Date(now.getTime() - TELEMETRY_HISTORY_MS)),
        ),
      )
      .orderBy(asc(boxTelemetryHistory.minute));
    return { latest: latest ?? null, history };
  }

  /**
   * The latest sample of every live box (an open instance, a workspace not destroyed) sampled since
   * `since`: what /metrics aggregates.
   */
  async fleet(since: Date): Promise<FleetSample[]> {
    const scope = this.#access.scopeOf("telemetry.read", "workspace");
    if (scope.kind !== "all") throw new NotFound("workspace");
    return this.#access.db
      .select({
        workspaceId: boxTelemetry.workspaceId,
        sampledAt: boxTelemetry.sampledAt,
        ...figures(boxTelemetry),
      })
      .from(boxTelemetry)
      .innerJoin(workspaces, eq(workspaces.id, boxTelemetry.workspaceId))
      .innerJoin(workspaceInstances, eq(workspaceInstances.id, boxTelemetry.instanceId))
      .where(
        and(
          ne(workspaces.state, "destroyed"),
          isNull(workspaceInstances.stoppedAt),
          gte(boxTelemetry.sampledAt, since),
        ),
      );
  }

  /**
   * The fleet's figures over live boxes sampled since `since`, aggregated in Postgres (a scrape stays cheap
   * at thousands of boxes): how many report, how many are at or above `diskWarnRatio`, the highest disk,
   * memory and load, and for each of `bounds` how many boxes' disk ratio is at most it.
   */
  async fleetSummary(since: Date, diskWarnRatio: number, bounds: readonly number[]): Promise<FleetSummary> {
    const scope = this.#access.scopeOf("telemetry.read", "workspace");
    if (scope.kind !== "all") throw new NotFound("workspace");
    const { rows } = await this.#access.db.execute<{
      reporting: number;
      disk_known: number;
      over: number;
      disk_max: number;
      memory_max: number;
      load_max: number;
      at_most: number[];
    }>(sql`
      SELECT count(*)::int AS reporting,
             count(disk)::int AS disk_known,
             count(*) FILTER (WHERE disk >= ${diskWarnRatio})::int AS over,
             coalesce(max(disk), 0)::float8 AS disk_max,
             coalesce(max(memory), 0)::float8 AS memory_max,
             coalesce(max(load), 0)::float8 AS load_max,
             ARRAY[${sql.join(
               bounds.map((b) => sql`count(*) FILTER (WHERE disk <= ${b}::float8)::int`),
               sql`, `,
             )}]::int[] AS at_most
        FROM (
          SELECT CASE WHEN t.disk_total_bytes > 0 AND t.disk_free_bytes IS NOT NULL
                      THEN least(1, greatest(0, (t.disk_total_bytes - t.disk_free_bytes)::float8 / t.disk_total_bytes)) END AS disk,
                 CASE WHEN t.mem_total_bytes > 0 AND t.mem_available_bytes IS NOT NULL
                      THEN least(1, greatest(0, (t.mem_total_bytes - t.mem_available_bytes)::float8 / t.mem_total_bytes)) END AS memory,
                 t.load_avg1::float8 AS load
            FROM ${boxTelemetry} t
            JOIN ${workspaces} w ON w.id = t.workspace_id
            JOIN ${workspaceInstances} i ON i.id = t.instance_id
           WHERE w.state <> 'destroyed' AND i.stopped_at IS NULL AND t.sampled_at >= ${since.toISOString()}::timestamptz
        ) s`);
    const r = rows[0]!;
    return {
      reporting: r.reporting,
      diskKnown: r.disk_known,
      overThreshold: r.over,
      diskMax: r.disk_max,
      memoryMax: r.memory_max,
      loadMax: r.load_max,
      diskAtMost: bounds.map((b, i) => ({ le: b, boxes: r.at_most[i] ?? 0 })),
    };
  }

  /** Deletes every workspace's history older than 24 h (a destroyed workspace's stops being pruned on insert). */
  async prune(now = new Date()): Promise<number> {
    const scope = this.#access.scopeOf("telemetry.read", "workspace");
    if (scope.kind !== "all") throw new NotFound("workspace");
    const gone = await this.#access.db
      .delete(boxTelemetryHistory)
      .where(lt(boxTelemetryHistory.minute, new Date(now.getTime() - TELEMETRY_HISTORY_MS)))
      .returning({ id: boxTelemetryHistory.workspaceId });
    return gone.length;
  }
}
