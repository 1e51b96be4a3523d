/**
 * Plans as operators read them: resource, operation and the keys that change. Built from the engine's
 * `resourcePreEvent`s (the same events that stream into build logs), and printed by `berth stacks diff` and
 * the admin API. Pure functions: no CLI, no I/O.
 */
import type { EngineEvent, OpType, StepEventMetadata } from "@pulumi/pulumi/automation/index.js";
import type { DiffOp, ResourceChange, StackDiff } from "../driver.ts";

const STACK_TYPE = "pulumi:pulumi:Stack";

/** How each engine step reads for an operator. Reads, refreshes and discards change nothing in the cloud. */
const OPS: Record<OpType, DiffOp> = {
  same: "same",
  create: "create",
  update: "update",
  delete: "delete",
  replace: "replace",
  "create-replacement": "replace",
  "delete-replaced": "replace",
  "import-replacement": "replace",
  import: "create",
  read: "same",
  "read-replacement": "same",
  refresh: "same",
  discard: "same",
  "discard-replaced": "same",
  "remove-pending-replace": "same",
};

/** Severity when several steps touch one resource (a replace shows as three steps). */
const RANK: Record<DiffOp, number> = { same: 0, update: 1, create: 2, delete: 2, replace: 3 };

/** The logical name: the part of the URN after the last `::`. */
export function resourceNameFromUrn(urn: string): string {
  return urn.slice(urn.lastIndexOf("::") + 2);
}

/** Changed property paths: the detailed diff when the provider gave one, else the coarse diff keys. */
export function changedKeys(m: StepEventMetadata): string[] {
  const keys = m.detailedDiff ? Object.keys(m.detailedDiff) : (m.diffs ?? []);
  const replaceReasons = m.op === "replace" || m.op === "create-replacement" ? (m.keys ?? []) : [];
  return [...new Set([...keys, ...replaceReasons])].sort();
}

export function resourceChange(m: StepEventMetadata): ResourceChange {
  const op = OPS[m.op] ?? "update";
  return {
    resource: resourceNameFromUrn(m.urn),
    type: m.type,
    op,
    changedKeys: op === "update" || op === "replace" ? changedKeys(m) : [],
  };
}

/** One entry per resource, in the engine's order, from the `resourcePreEvent`s of a preview or update. */
export function stackDiffFromEvents(workspaceId: string, events: Iterable<EngineEvent>): StackDiff {
  const byUrn = new Map<string, ResourceChange>();
  for (const e of events) {
    const m = e.resourcePreEvent?.metadata;
    if (!m || m.type === STACK_TYPE) continue;
    const next = resourceChange(m);
    const prev = byUrn.get(m.urn);
    if (!prev) {
      byUrn.set(m.urn, next);
      continue;
    }
    byUrn.set(m.urn, {
      ...(RANK[next.op] > RANK[prev.op] ? next : prev),
      changedKeys: [...new Set([...prev.changedKeys, ...next.changedKeys])].sort(),
    });
  }
  return { workspaceId, changes: [...byUrn.values()] };
}

const SYMBOL: Record<DiffOp, string> = { create: "+", update: "~", replace: "+-", delete: "-", same: " " };

/**
 * A plain-text rendering, one line per resource:
 *
 *     ws-4f1c: 1 to replace, 1 to update, 5 unchanged
 *       ~  update   workspace-firewall  hcloud:index/firewall:Firewall  rules
 *       +- replace  workspace-server    hcloud:index/server:Server      serverType
 */
export function formatStackDiff(diff: StackDiff, opts: { showSame?: boolean } = {}): string {
  const count = (op: DiffOp) => diff.changes.filter((c) => c.op === op).length;
  const parts = (
    [
      ["create", "to create"],
      ["replace", "to replace"],
      ["update", "to update"],
      ["delete", "to delete"],
      ["same", "unchanged"],
    ] as const
  )
    .filter(([op]) => count(op) > 0)
    .map(([op, label]) => `${count(op)} ${label}`);
  const header = `ws-${diff.workspaceId}: ${parts.length > 0 ? parts.join(", ") : "no resources"}`;
  const shown = diff.changes.filter((c) => opts.showSame || c.op !== "same");
  if (shown.length === 0) return `${header}\n  (no changes)\n`;
  const width = (f: (c: ResourceChange) => string) => Math.max(...shown.map((c) => f(c).length));
  const wName = width((c) => c.resource);
  const wType = width((c) => c.type);
  const lines = shown.map((c) =>
    [
      `  ${SYMBOL[c.op].padEnd(2)}`,
      c.op.padEnd(7),
      c.resource.padEnd(wName),
      c.changedKeys.length > 0 ? c.type.padEnd(wType) : c.type,
      c.changedKeys.join(", "),
    ]
      .join(" ")
      .trimEnd(),
  );
  return `${header}\n${lines.join("\n")}\n`;
}
