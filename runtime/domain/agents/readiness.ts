/**
 * The moment a box becomes usable: its agent reports `ready`. A start build that finished before that
 * leaves the workspace `starting`; this moves it to `ready` and records time-to-ready (once per instance).
 */
import type { Metrics } from "../../platform/metrics.ts";
import type { AuthorizedStore } from "../../store/store.ts";

/** `agent` is the store as the reporting agent (agent-token.ts): it marks only its own instance. */
export async function markAgentReady(agent: AuthorizedStore, metrics: Metrics): Promise<void> {
  const secondsToReady = await agent.agents.markReady();
  if (secondsToReady !== null && secondsToReady >= 0) metrics.timeToReady.observe(secondsToReady);
}
