/** Words and numbers for people: relative times, sizes, and what a workspace's state means. */
import prettyBytes from "pretty-bytes";
import type { Overview, Workspace } from "./api.ts";

const UNITS: Array<[Intl.RelativeTimeFormatUnit, number]> = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
];
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

/** "just now", "5 minutes ago", "yesterday". */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "never";
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  if (Math.abs(seconds) < 60) return "just now";
  for (const [unit, size] of UNITS)
    if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
  return relative.format(Math.round(seconds / 60), "minute");
}

/** 1536 → "1.5 kB" (decimal units, as disks are sold); "?" when unknown. */
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "?";
  return prettyBytes(n, { maximumFractionDigits: 1 });
}

export const BUSY_STATES = new Set(["provisioning", "starting", "waking", "hibernating", "destroying"]);

/** A state in words, for the sentence under a workspace's name. */
export function stateSentence(state: string): string {
  switch (state) {
    case "ready":
      return "Running. Open a session to work in it.";
    case "unhealthy":
      return "Running, but the box is not answering its health checks. Terminals may not connect.";
    case "hibernated":
      return "Hibernated: the box is stopped and its files are kept. Wake it to work again.";
    case "provisioning":
      return "Being created. This takes a moment.";
    case "starting":
    case "waking":
      return "Starting up. Terminals connect as soon as it is ready.";
    case "hibernating":
      return "Going to sleep. Its files are kept.";
    case "destroying":
      return "Being destroyed.";
    case "destroyed":
      return "Destroyed. Its files and sessions are gone.";
    case "failed":
      return "The last change failed. The build log says why; waking tries again.";
    default:
      return state;
  }
}

/** What a workspace runs on, in the terms of the driver that realizes it. */
export function workspaceFacts(w: Workspace, overview: Overview | null): string {
  if (!overview) return "";
  if (overview.driver.name === "local") return "On this machine";
  return `Hetzner ${w.serverType} · ${w.location} · ${w.volumeSizeGb} GB volume`;
}

/** The machine local workspaces share, in one line. */
export function hostFacts(overview: Overview | null): string | null {
  const host = overview?.driver.host;
  if (!host) return null;
  const parts = [`${host.cpus} CPU${host.cpus === 1 ? "" : "s"}`, `${bytes(host.memoryBytes)} memory`];
  if (host.diskFreeBytes !== null) parts.push(`${bytes(host.diskFreeBytes)} free disk`);
  return parts.join(" · ");
}

/** The same rule as the API's (runtime/api/routes/workspaces.ts), said in words. */
export function workspaceNameProblem(name: string): string | null {
  const trimmed = name.trim();
  if (trimmed.length === 0) return "Give your workspace a name.";
  if (trimmed.length > 64) return `Use at most 64 characters (this is ${trimmed.length}).`;
  if (!/^[\p{L}\p{N} ._-]+$/u.test(trimmed))
    return "Use letters, digits, spaces, dots, dashes or underscores only.";
  return null;
}

/** Session names reach tmux: the API allows ^[a-z0-9-]{1,32}$ only (runtime/api/routes/sessions.ts). */
export function sessionNameProblem(name: string): string | null {
  if (name === "") return null; // the server picks one
  if (name.length > 32) return `Use at most 32 characters (this is ${name.length}).`;
  if (/[A-Z]/.test(name) && /^[a-zA-Z0-9-]+$/.test(name)) return "Use lowercase letters only.";
  if (!/^[a-z0-9-]+$/.test(name)) return "Use lowercase letters, digits and dashes only (no spaces).";
  return null;
}
