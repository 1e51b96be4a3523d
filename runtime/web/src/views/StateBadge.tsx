const TONE: Record<string, string> = {
  ready: "ok",
  hibernated: "idle",
  failed: "bad",
  unhealthy: "bad",
  destroyed: "idle",
};

const LABEL: Record<string, string> = {
  ready: "Ready",
  unhealthy: "Unhealthy",
  hibernated: "Hibernated",
  hibernating: "Hibernating",
  provisioning: "Creating",
  starting: "Starting",
  waking: "Waking",
  destroying: "Destroying",
  destroyed: "Destroyed",
  failed: "Failed",
};

/** A workspace state as a coloured pill with a dot; transitional states pulse. */
export function StateBadge({ state }: { state: string }) {
  const tone = TONE[state] ?? "busy";
  return (
    <span class={`badge badge-${tone}`} role="status" aria-label={`state: ${state}`}>
      <span class="badge-dot" aria-hidden="true" />
      {LABEL[state] ?? state}
    </span>
  );
}
