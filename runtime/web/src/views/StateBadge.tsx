const TONE: Record<string, string> = {
  ready: "ok",
  hibernated: "idle",
  failed: "bad",
  unhealthy: "bad",
  destroyed: "idle",
};

/** A workspace state as a coloured badge; transitional states pulse. */
export function StateBadge({ state }: { state: string }) {
  const tone = TONE[state] ?? "busy";
  return (
    <span class={`badge badge-${tone}`} role="status" aria-label={`state: ${state}`}>
      {state}
    </span>
  );
}
