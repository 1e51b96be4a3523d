/**
 * The committed Grafana dashboard and Prometheus alert rules (infra/observability): promtool accepts the
 * rules and passes their unit tests, the dashboard is valid JSON, and every metric either one reads is a
 * series a real control plane's /metrics exposes (so a renamed metric breaks this test, not an operator's
 * night).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { startTestControlPlane } from "../test/control-plane.ts";
import { exposedNames, metricNamesIn } from "../test/promql-names.ts";

const DIR = join(import.meta.dirname, "../../infra/observability");
const RULES = join(DIR, "alerts.rules.yml");

interface Panel {
  title: string;
  type: string;
  targets?: Array<{ expr: string }>;
  panels?: Panel[];
}

describe("observability: dashboard and alert rules", async () => {
  const cp = await startTestControlPlane();
  const exposed = exposedNames(await (await fetch(`${cp.url}/metrics`)).text());

  it("reads metric names out of PromQL", () => {
    expect(
      metricNamesIn(
        'histogram_quantile(0.95, sum by (le, leg) (rate(terminal_latency_seconds_bucket{leg="client"}[$__rate_interval]))) > 36 * 3600 and on (x) up',
      ).sort(),
    ).toEqual(["terminal_latency_seconds_bucket", "up"]);
    expect(metricNamesIn("sum(rate(a_total[5m])) / sum(rate(b_total[5m])) > 1e3").sort()).toEqual([
      "a_total",
      "b_total",
    ]);
  });

  it("promtool accepts the rules and their unit tests pass", () => {
    const check = execFileSync("promtool", ["check", "rules", RULES], { encoding: "utf8" });
    expect(check).toContain("SUCCESS");
    const test = execFileSync("promtool", ["test", "rules", join(DIR, "alerts.test.yml")], {
      encoding: "utf8",
    });
    expect(test).toContain("SUCCESS");
  });

  it("the alert rules read only metrics /metrics exposes, and cover the issue's alerts", () => {
    const doc = parse(readFileSync(RULES, "utf8")) as {
      groups: Array<{ rules: Array<{ alert: string; expr: string }> }>;
    };
    const rules = doc.groups.flatMap((g) => g.rules);
    const missing = rules.flatMap((r) =>
      metricNamesIn(r.expr)
        .filter((n) => !exposed.has(n))
        .map((n) => `${r.alert}: ${n}`),
    );
    expect(missing).toEqual([]);
    const read = new Set(rules.flatMap((r) => metricNamesIn(r.expr)));
    for (const name of [
      "backup_last_success_age_seconds_max",
      "workspace_builds_total",
      "terminal_reconnections_total",
      "terminal_latency_seconds_bucket",
      "workspace_time_to_ready_seconds_bucket",
      "box_disk_over_threshold_boxes",
      "billing_meter_events_unsent",
    ])
      expect(read).toContain(name);
  });

  it("the dashboard is valid JSON whose every query reads metrics /metrics exposes", () => {
    const dashboard = JSON.parse(readFileSync(join(DIR, "grafana-dashboard.json"), "utf8")) as {
      title: string;
      uid: string;
      panels: Panel[];
    };
    expect(dashboard.uid).toBe("berth-overview");
    const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
    const queries = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
    expect(queries.length).toBeGreaterThan(20);
    const missing = queries.flatMap((q) =>
      metricNamesIn(q.expr)
        .filter((n) => !exposed.has(n))
        .map((n) => `${q.panel}: ${n}`),
    );
    expect(missing).toEqual([]);
    // Every panel id is unique (Grafana silently drops duplicates).
    const ids = panels.map((p) => (p as unknown as { id: number }).id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
