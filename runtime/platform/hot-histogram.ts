import type { Metric, Registry } from "prom-client";

/**
 * A Prometheus histogram with fixed label names, for code that observes once per request. prom-client's
 * Histogram checks the label names, then sorts and joins them into a new key string on every observation
 * (about 1.1 µs each, hot): 3 % of the control plane's CPU on a small preview request through the byte
 * relay. Here a label set's cell is found by one lookup on its joined values and updated in place. What a
 * scrape reads is what prom-client's Histogram would print for the same observations (the test compares
 * the two), so dashboards and alert rules see no difference.
 */
export class HotHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #labelNames: readonly L[];
  readonly #bounds: readonly number[];
  readonly #cells = new Map<string, Cell<L>>();

  constructor(config: {
    name: string;
    help: string;
    labelNames: readonly L[];
    buckets: readonly number[];
    registers: Registry[];
  }) {
    this.name = config.name;
    this.help = config.help;
    this.#labelNames = config.labelNames;
    this.#bounds = [...config.buckets].sort((a, b) => a - b);
    // Registry takes any object with prom-client's metric interface (name, get, reset); its type names
    // only the library's own classes.
    for (const registry of config.registers) registry.registerMetric(this as unknown as Metric);
  }

  observe(labels: Record<L, string>, value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`${this.name}: not a number: ${value}`);
    // Each value with its length before it: no two label sets share a key, whatever their values hold.
    let key = "";
    for (const name of this.#labelNames) {
      const v = String(labels[name]);
      key += `${v.length}:${v}`;
    }
    let cell = this.#cells.get(key);
    if (!cell) {
      const own = {} as Record<L, string>;
      for (const name of this.#labelNames) own[name] = String(labels[name]);
      cell = { labels: own, counts: new Float64Array(this.#bounds.length), sum: 0, count: 0 };
      this.#cells.set(key, cell);
    }
    // Linear, as prom-client does: a request's time is nearly always in the first buckets.
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    if (i < bounds.length) cell.counts[i]!++;
    cell.sum += value;
    cell.count++;
  }

  /** Starts timing now; the function returned observes the time since, with the labels it is given. */
  startTimer(): (labels: Record<L, string>) => number {
    const started = performance.now();
    return (labels) => {
      const seconds = (performance.now() - started) / 1000;
      this.observe(labels, seconds);
      return seconds;
    };
  }

  /** prom-client's metric interface: the registry renders these values. */
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Sample[] }> {
    const values: Sample[] = [];
    const bucket = `${this.name}_bucket`;
    for (const { labels, counts, sum, count } of this.#cells.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        cumulative += counts[i]!;
        values.push({ labels: { le: this.#bounds[i]!, ...labels }, value: cumulative, metricName: bucket });
      }
      values.push({ labels: { le: "+Inf", ...labels }, value: count, metricName: bucket });
      values.push({ labels: { ...labels }, value: sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...labels }, value: count, metricName: `${this.name}_count` });
    }
    const { name, help, type, aggregator } = this;
    return Promise.resolve({ name, help, type, aggregator, values });
  }

  reset(): void {
    this.#cells.clear();
  }
}

interface Cell<L extends string> {
  labels: Record<L, string>;
  /** Observations per bucket (not cumulative); those above the last bound are only in `count`. */
  counts: Float64Array;
  sum: number;
  count: number;
}

interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
}
