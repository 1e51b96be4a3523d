/**
 * The metric names a PromQL expression reads, and the names a Prometheus text exposition offers: enough
 * to check that the committed dashboard and alert rules (infra/observability) only ask for series
 * /metrics really exposes. Not a PromQL parser: strings, label matchers, ranges and grouping clauses are
 * blanked out first, then every identifier that is not a function call, keyword or Grafana variable is
 * a metric name. Test-only.
 */
const KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool"]);
const KEYWORDS_AND_OPERATORS = new Set([...KEYWORDS, "and", "or", "unless", "offset", "inf", "nan"]);

export function metricNamesIn(expr: string): string[] {
  const s = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/'(?:[^'\\]|\\.)*'/g, "''")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = new Set<string>();
  for (const m of s.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const before = s[m.index - 1] ?? "";
    if (/[0-9.$]/.test(before)) continue; // 1e3, 0.5, $__rate_interval
    if (
      s
        .slice(m.index + m[0].length)
        .trimStart()
        .startsWith("(")
    )
      continue; // a function
    if (KEYWORDS_AND_OPERATORS.has(m[0].toLowerCase())) continue;
    names.add(m[0]);
  }
  return [...names];
}

/** Every series name a scrape can hold: `# TYPE` lines, with a histogram's and summary's derived names. */
export function exposedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split("\n")) {
    const m = /^# TYPE (\S+) (\S+)/.exec(line);
    if (!m) continue;
    const [, name, type] = m as unknown as [string, string, string];
    names.add(name);
    if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(name + s);
    if (type === "summary") for (const s of ["_sum", "_count"]) names.add(name + s);
  }
  return names;
}
