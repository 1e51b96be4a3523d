/** Engine events → a build log: a stage per resource step, a line per diagnostic, policy violation and result. */
import type { EngineEvent, OpType } from "@pulumi/pulumi/automation/index.js";
import type { BuildLog, BuildLogLevel } from "../driver.ts";
import { resourceNameFromUrn } from "./diff.ts";

const STACK_TYPE = "pulumi:pulumi:Stack";
// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes are control characters.
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;

const DONE: Partial<Record<OpType, string>> = {
  create: "created",
  update: "updated",
  delete: "deleted",
  replace: "replaced",
  "create-replacement": "created replacement",
  "delete-replaced": "deleted original",
  refresh: "refreshed",
  read: "read",
  import: "imported",
};

function level(severity: string): BuildLogLevel {
  if (severity === "error") return "error";
  if (severity === "warning") return "warn";
  return "info";
}

export function clean(message: string): string {
  return message.replace(ANSI, "").trim();
}

export function engineEventsToLog(log: BuildLog): (event: EngineEvent) => void {
  return (e) => {
    const pre = e.resourcePreEvent?.metadata;
    if (pre) {
      if (pre.op !== "same" && pre.type !== STACK_TYPE) {
        log.stage(`${pre.op} ${resourceNameFromUrn(pre.urn)} (${pre.type})`);
      }
      return;
    }
    const done = e.resOutputsEvent?.metadata;
    if (done) {
      if (done.op !== "same" && done.type !== STACK_TYPE) {
        log.line("info", `${DONE[done.op] ?? done.op} ${resourceNameFromUrn(done.urn)}`);
      }
      return;
    }
    const failed = e.resOpFailedEvent?.metadata;
    if (failed) {
      log.line("error", `failed to ${failed.op} ${resourceNameFromUrn(failed.urn)}`);
      return;
    }
    const d = e.diagnosticEvent;
    if (d) {
      const message = clean(d.message);
      if (d.ephemeral || message === "") return;
      const where = d.urn && !d.urn.includes(`::${STACK_TYPE}::`) ? `${resourceNameFromUrn(d.urn)}: ` : "";
      log.line(level(d.severity), `${where}${message}`);
      return;
    }
    const p = e.policyEvent;
    if (p) {
      const where = p.resourceUrn ? ` (${resourceNameFromUrn(p.resourceUrn)})` : "";
      log.line(
        p.enforcementLevel === "mandatory" ? "error" : "warn",
        `policy ${p.policyPackName}/${p.policyName}${where}: ${clean(p.message)}`,
      );
      return;
    }
    const s = e.summaryEvent;
    if (s) {
      const changes = Object.entries(s.resourceChanges ?? {})
        .filter(([op, n]) => op !== "same" && (n ?? 0) > 0)
        .map(([op, n]) => `${n} ${op}`);
      log.line(
        s.maybeCorrupt ? "warn" : "info",
        `${changes.length > 0 ? changes.join(", ") : "no changes"} in ${s.durationSeconds}s${s.maybeCorrupt ? " (state may be corrupt)" : ""}`,
      );
    }
  };
}
