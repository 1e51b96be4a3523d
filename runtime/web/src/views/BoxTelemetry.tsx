import { ago, bytes } from "../format.ts";

interface Figures {
  loadAvg1: number | null;
  memTotalBytes: number | null;
  memAvailableBytes: number | null;
  memUsedPercent: number | null;
  diskTotalBytes: number | null;
  diskFreeBytes: number | null;
  diskUsedPercent: number | null;
}
export interface Telemetry {
  latest: (Figures & { sampledAt: string; diskWarning: boolean }) | null;
  history: Array<Figures & { minute: string }>;
  diskWarnPercent: number;
}

/**
 * The box's load, memory and volume disk from its agent's heartbeats (GET /api/v1/workspaces/:id/telemetry),
 * refreshed with the rest of the workspace view, and a warning once the disk passes the threshold. Each
 * figure has a bar for now and a line for the last 24 h.
 */
export function BoxTelemetry({ telemetry, running }: { telemetry: Telemetry | null; running: boolean }) {
  const latest = telemetry?.latest;
  return (
    <section class="panel" aria-labelledby="telemetry-h">
      <h2 id="telemetry-h">Box</h2>
      {!latest ? (
        <p class="muted">
          {running ? "Waiting for the box's first report…" : "No report yet: the box is not running."}
        </p>
      ) : (
        <>
          {latest.diskWarning && (
            <p class="notice notice-bad" role="alert">
              The disk is {Math.floor(latest.diskUsedPercent ?? 0)}% full ({bytes(latest.diskFreeBytes)}{" "}
              free). Free some space (old builds, caches, node_modules) before commands start failing.
            </p>
          )}
          <ul class="meters">
            <Meter
              label="CPU load"
              value={latest.loadAvg1 === null ? "?" : latest.loadAvg1.toFixed(2)}
              detail="1-minute load average"
              // A load of 4 fills the bar: about every core of a small box busy.
              ratio={latest.loadAvg1 === null ? null : Math.min(1, latest.loadAvg1 / 4)}
              points={telemetry.history.map((p) => ({
                at: p.minute,
                v: p.loadAvg1 === null ? null : Math.min(1, p.loadAvg1 / 4),
              }))}
            />
            <Meter
              label="Memory"
              value={pct(latest.memUsedPercent)}
              detail={`${bytes(used(latest.memTotalBytes, latest.memAvailableBytes))} of ${bytes(latest.memTotalBytes)}`}
              ratio={ratio(latest.memUsedPercent)}
              points={telemetry.history.map((p) => ({ at: p.minute, v: ratio(p.memUsedPercent) }))}
            />
            <Meter
              label="Disk"
              value={pct(latest.diskUsedPercent)}
              detail={`${bytes(latest.diskFreeBytes)} free of ${bytes(latest.diskTotalBytes)}`}
              ratio={ratio(latest.diskUsedPercent)}
              warn={latest.diskWarning}
              points={telemetry.history.map((p) => ({ at: p.minute, v: ratio(p.diskUsedPercent) }))}
            />
          </ul>
          <p class="muted">
            Reported {ago(latest.sampledAt)}; lines show the last 24 hours. You are told once when the disk
            passes {telemetry.diskWarnPercent}%.
          </p>
        </>
      )}
    </section>
  );
}

function Meter(p: {
  label: string;
  value: string;
  detail: string;
  ratio: number | null;
  points: Point[];
  warn?: boolean;
}) {
  return (
    <li class={`meter${p.warn ? " meter-warn" : ""}`}>
      <div class="meter-head">
        <span>{p.label}</span>
        <strong>{p.value}</strong>
      </div>
      {/* The figure itself is the text above; the bar only draws it. */}
      <div class="meter-bar" aria-hidden="true">
        <span style={{ width: `${Math.round((p.ratio ?? 0) * 100)}%` }} />
      </div>
      <Sparkline points={p.points} />
      <span class="muted meter-detail">{p.detail}</span>
    </li>
  );
}

interface Point {
  at: string;
  v: number | null;
}

const DAY_MS = 24 * 3600_000;

/**
 * The history as one SVG polyline over the last 24 h (time across, 0 at the bottom, 1 at the top), so a
 * hibernated stretch shows as a gap in time rather than being squeezed out.
 */
function Sparkline({ points }: { points: Point[] }) {
  const known = points.filter((p): p is { at: string; v: number } => p.v !== null);
  if (known.length < 2) return null;
  const end = Date.parse(known[known.length - 1]!.at);
  const x = (at: string) => Math.max(0, 100 - ((end - Date.parse(at)) / DAY_MS) * 100);
  const line = known.map((p) => `${x(p.at).toFixed(2)},${(30 - p.v * 30).toFixed(2)}`).join(" ");
  return (
    <svg class="sparkline" viewBox="0 0 100 30" preserveAspectRatio="none" aria-hidden="true">
      <polyline
        points={line}
        fill="none"
        stroke="currentColor"
        stroke-width="1.5"
        vector-effect="non-scaling-stroke"
      />
    </svg>
  );
}

const pct = (n: number | null) => (n === null ? "?" : `${Math.round(n)}%`);
const ratio = (n: number | null) => (n === null ? null : Math.min(1, Math.max(0, n / 100)));
const used = (total: number | null, free: number | null) =>
  total === null || free === null ? null : total - free;
