/**
 * How probe results move a workspace between `ready` and `unhealthy`, with hysteresis on both edges: one
 * failed run is noise (a box busy compiling, a dropped packet), so `unhealthy` takes `failThreshold`
 * consecutive failed runs; one passing run after an outage may be luck, so `ready` again takes
 * `recoverThreshold` consecutive passing runs. Only a workspace the probes marked unhealthy is brought back
 * by them: one the reconciler marked (its agent never reported ready) recovers when the agent says so.
 */

export type HealthCheckName = "http" | "handshake" | "heartbeat";

export interface CheckOutcome {
  ok: boolean;
  /** Short and address-free: "ok", "unreachable", "timeout", "http 404", "upgrade refused (401)", ... */
  detail: string;
}

export interface HealthThresholds {
  failThreshold: number;
  recoverThreshold: number;
}

export interface HealthCounters {
  failures: number;
  successes: number;
  /** The probe job turned this workspace unhealthy and has not seen it recover yet. */
  markedUnhealthy: boolean;
}

export type HealthTransition = "unhealthy" | "ready" | null;

export function nextHealth(
  previous: HealthCounters,
  passed: boolean,
  state: string,
  t: HealthThresholds,
): HealthCounters & { transition: HealthTransition } {
  const failures = passed ? 0 : previous.failures + 1;
  const successes = passed ? previous.successes + 1 : 0;
  let transition: HealthTransition = null;
  if (!passed && state === "ready" && failures >= t.failThreshold) transition = "unhealthy";
  if (passed && state === "unhealthy" && previous.markedUnhealthy && successes >= t.recoverThreshold)
    transition = "ready";
  const markedUnhealthy =
    transition === "unhealthy" ? true : transition === "ready" ? false : previous.markedUnhealthy;
  return { failures, successes, markedUnhealthy, transition };
}

/**
 * One line for operators and the owner: which checks failed and why, and whether the agent still
 * heartbeats, which tells "the box is down" from "the box is up but the control plane cannot reach its
 * terminal" (a path or ttyd problem, not a dead box).
 */
export function describeFailure(checks: Record<HealthCheckName, CheckOutcome>): string {
  const failed = (Object.entries(checks) as Array<[HealthCheckName, CheckOutcome]>).filter(([, c]) => !c.ok);
  if (failed.length === 0) return "all checks passed";
  const parts = failed.filter(([name]) => name !== "heartbeat").map(([name, c]) => `${name}: ${c.detail}`);
  const alive = checks.heartbeat.ok;
  if (parts.length === 0)
    return `agent not heartbeating (${checks.heartbeat.detail}); terminal endpoint answers`;
  return `${parts.join("; ")}; ${alive ? "agent still heartbeating" : `agent not heartbeating (${checks.heartbeat.detail})`}`;
}
