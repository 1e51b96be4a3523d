/**
 * The terminal relay's Prometheus metrics, registered on the control plane's registry (served at /metrics).
 * DESIGN.md §8 requires reconnection rate and terminal latency; the rest is what an operator needs to see
 * the relay is healthy: how many sockets, how long they live, why they were refused or closed, how often
 * backpressure engaged, and how many bytes went through.
 *
 * Reconnection rate = rate(terminal_reconnections_total) / rate(terminal_connections_total).
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export function createTerminalMetrics(registry: Registry) {
  const registers = [registry];
  return {
    sockets: new Gauge({
      name: "terminal_sockets",
      help: "Terminal WebSockets currently relayed by this process",
      registers,
    }),
    connections: new Counter({
      name: "terminal_connections_total",
      help: "Terminal WebSockets accepted (all checks passed, upstream being opened)",
      registers,
    }),
    reconnections: new Counter({
      name: "terminal_reconnections_total",
      help: "Accepted terminal WebSockets whose client said it was reconnecting (reconnect counter > 0)",
      registers,
    }),
    refusals: new Counter({
      name: "terminal_refusals_total",
      help: "Terminal WebSockets refused before any upstream connection, by reason",
      labelNames: ["reason"] as const,
      registers,
    }),
    closes: new Counter({
      name: "terminal_closes_total",
      help: "Relayed terminal WebSockets that ended, by the close code sent to the client",
      labelNames: ["code"] as const,
      registers,
    }),
    duration: new Histogram({
      name: "terminal_socket_duration_seconds",
      help: "Lifetime of relayed terminal WebSockets",
      buckets: [1, 10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600],
      registers,
    }),
    latency: new Histogram({
      name: "terminal_latency_seconds",
      help: "WebSocket ping/pong round trip by leg: client (browser to relay) and upstream (relay to box)",
      labelNames: ["leg"] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    upstreamConnect: new Histogram({
      name: "terminal_upstream_connect_seconds",
      help: "Time to open the WebSocket to the box's terminal endpoint",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    backpressure: new Counter({
      name: "terminal_backpressure_pauses_total",
      help: "Times the relay stopped reading one leg because the other leg's send buffer was full, by the leg paused",
      labelNames: ["paused"] as const,
      registers,
    }),
    bytes: new Counter({
      name: "terminal_bytes_total",
      help: "Bytes relayed, by direction: up (client to box) and down (box to client)",
      labelNames: ["direction"] as const,
      registers,
    }),
  };
}

export type TerminalMetrics = ReturnType<typeof createTerminalMetrics>;
