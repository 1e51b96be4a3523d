/**
 * The moment a box becomes usable: its agent reports `ready`. A start build that finished before that
 * leaves the workspace `starting`; this moves it to `ready` and records time-to-ready (once per instance),
 * labelled create or wake: a first boot pulls the image and runs onboarding, a wake only restores the
 * volume, so one distribution over both would hide a slow wake behind fast creates or the reverse.
 */
import type { Metrics } from "../../platform/metrics.ts";
import type { AuthorizedStore } from "../../store/store.ts";

/** `agent` is the store as the reporting agent (agent-token.ts): it marks only its own instance. */
export async function markAgentReady(agent: AuthorizedStore, metrics: Metrics): Promise<void> {
  const ready = await agent.agents.markReady();
  if (ready && ready.seconds >= 0) metrics.timeToReady.observe({ operation: ready.operation }, ready.seconds);
}
