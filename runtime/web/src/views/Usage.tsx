import { useEffect, useState } from "preact/hooks";
import { api, humanError } from "../api.ts";
import { href } from "../router.ts";

interface Usage {
  period: { start: string; end: string };
  plan: { name: string; includedMinutes: number | null; overage: "billed" | "stop" };
  minutes: number;
  includedMinutes: number | null;
  remainingMinutes: number | null;
  projectedMinutes: number;
  workspaces: Array<{ workspaceId: string; name: string; minutes: number }>;
  days: Array<{ day: string; minutes: number }>;
}

const hours = (minutes: number) =>
  minutes < 60
    ? `${minutes} min`
    : `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;

/** Every day of the period, with the metered minutes of those that had any. */
function periodDays(usage: Usage): Array<{ day: string; minutes: number }> {
  const byDay = new Map(usage.days.map((d) => [d.day, d.minutes]));
  const out: Array<{ day: string; minutes: number }> = [];
  for (let t = Date.parse(usage.period.start); t < Date.parse(usage.period.end); t += 86_400_000) {
    const day = new Date(t).toISOString().slice(0, 10);
    out.push({ day, minutes: byDay.get(day) ?? 0 });
  }
  return out;
}

/**
 * This period's compute minutes against the plan: used, included, left and where the month is heading,
 * a bar per day (plain elements, no chart library), and the minutes of each workspace.
 */
export function UsagePage() {
  const [usage, setUsage] = useState<Usage | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const load = () =>
      api<{ usage: Usage }>("/api/v1/usage")
        .then((r) => {
          setUsage(r.usage);
          setError(null);
        })
        .catch((e) => setError(humanError(e)));
    load();
    const t = setInterval(load, 60_000);
    return () => clearInterval(t);
  }, []);

  if (error)
    return (
      <main class="page">
        <p class="error">{error}</p>
      </main>
    );
  if (!usage)
    return (
      <main class="page">
        <p class="muted">Loading…</p>
      </main>
    );
  const days = periodDays(usage);
  const peak = Math.max(1, ...days.map((d) => d.minutes));
  const included = usage.includedMinutes;
  const share = included ? Math.min(100, Math.round((usage.minutes / included) * 100)) : null;
  const month = new Date(usage.period.start).toLocaleDateString(undefined, {
    month: "long",
    year: "numeric",
    timeZone: "UTC",
  });
  return (
    <main class="page usage">
      <div class="page-head">
        <h1>Usage</h1>
        <a href={href.workspaces()}>Workspaces</a>
      </div>
      <section class="panel" aria-label="This period">
        <p class="muted">
          {month} · plan <strong>{usage.plan.name}</strong>
          {usage.plan.overage === "stop" ? " (stops at the included minutes)" : ""}
        </p>
        <dl class="usage-figures">
          <div>
            <dt>Used</dt>
            <dd data-testid="usage-minutes">{hours(usage.minutes)}</dd>
          </div>
          <div>
            <dt>Included</dt>
            <dd>{included === null ? "Unlimited" : hours(included)}</dd>
          </div>
          <div>
            <dt>Left</dt>
            <dd>{usage.remainingMinutes === null ? "Unlimited" : hours(usage.remainingMinutes)}</dd>
          </div>
          <div>
            <dt>Projected</dt>
            <dd>{hours(usage.projectedMinutes)}</dd>
          </div>
        </dl>
        {share !== null && (
          <meter
            class="usage-meter"
            min={0}
            max={100}
            low={80}
            high={99.9}
            optimum={0}
            value={share}
            aria-label="Share of included minutes used"
          >
            {share} %
          </meter>
        )}
      </section>
      <section class="panel" aria-label="Minutes per day">
        <h2>Minutes per day</h2>
        <div class="usage-chart" role="img" aria-label={`Minutes per day in ${month}`}>
          {days.map((d) => (
            <div class="usage-bar" key={d.day} title={`${d.day}: ${d.minutes} min`}>
              <span style={{ height: `${(d.minutes / peak) * 100}%` }} />
            </div>
          ))}
        </div>
        <p class="muted usage-axis">
          <span>{days[0]?.day.slice(5)}</span>
          <span>peak {hours(peak === 1 && days.every((d) => d.minutes === 0) ? 0 : peak)}</span>
          <span>{days.at(-1)?.day.slice(5)}</span>
        </p>
      </section>
      <section class="panel" aria-label="Per workspace">
        <h2>Per workspace</h2>
        {usage.workspaces.length === 0 ? (
          <p class="muted">No workspaces this period.</p>
        ) : (
          <ul class="usage-list">
            {usage.workspaces.map((w) => (
              <li key={w.workspaceId}>
                <a href={href.workspace(w.workspaceId)}>{w.name}</a>
                <span>{hours(w.minutes)}</span>
              </li>
            ))}
          </ul>
        )}
      </section>
    </main>
  );
}
