/**
 * `berth backup list|create|restore` and `berth export`: a workspace's restic backups through the public
 * backups API (README "Backups"). A backup or a restore runs on the box; the client follows it by polling
 * the run (its `progress`), and a restore further until the control plane's "Restore finished" (or
 * "failed") notification for the workspace arrives, since that is the only place the outcome is recorded.
 * An export streams the snapshot's .tar.gz to a file, never to a terminal.
 */

import { createWriteStream, fchmodSync, fstatSync, openSync, rmSync } from "node:fs";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { parseArgs } from "node:util";
import prettyBytes from "pretty-bytes";
import { type ApiClient, ClientError, Exit, errorFrom } from "./api.ts";
import { findWorkspace, table } from "./workspace-ref.ts";

interface Io {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

export interface CommandDeps {
  connect: () => ApiClient;
  usage: (command: string) => ClientError;
}

interface BackupRun {
  id: string;
  trigger: string;
  status: "pending" | "running" | "succeeded" | "failed";
  progress: number | null;
  snapshotId: string | null;
  bytesAdded: number | null;
  files: number | null;
  durationMs: number | null;
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
}

interface Snapshot {
  id: string;
  shortId: string;
  time: string;
  tags: string[];
  trigger: string | null;
  bytesAdded: number | null;
  files: number | null;
}

interface BackupList {
  runs: BackupRun[];
  snapshots: Snapshot[];
  repositoryError: string | null;
}

/** How often a running backup or restore is polled. */
const POLL_MS = 1_000;
/** A backup or restore that shows no end after this long is given up on (it keeps running on the box). */
const FOLLOW_TIMEOUT_MS = 30 * 60_000;

export function size(n: number | null): string {
  return n === null ? "-" : prettyBytes(n, { maximumFractionDigits: 1 });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A progress line: redrawn in place on a terminal, one line per change otherwise. */
function progressLine(out: NodeJS.WriteStream) {
  const tty = out.isTTY === true;
  let last = "";
  return {
    show(text: string) {
      if (text === last) return;
      last = text;
      out.write(tty ? `\r\x1b[2K${text}` : `${text}\n`);
    },
    done() {
      if (tty && last) out.write("\r\x1b[2K");
      last = "";
    },
  };
}

/** Polls a run until it ends; progress on `out`. */
async function followRun(
  api: ApiClient,
  workspaceId: string,
  runId: string,
  out: NodeJS.WriteStream,
  what: string,
): Promise<BackupRun> {
  const line = progressLine(out);
  const deadline = Date.now() + FOLLOW_TIMEOUT_MS;
  try {
    for (;;) {
      const { backup } = await api.poll<{ backup: BackupRun }>(
        `/api/v1/workspaces/${workspaceId}/backups/runs/${runId}`,
      );
      if (backup.status === "succeeded" || backup.status === "failed") return backup;
      if (Date.now() > deadline)
        throw new ClientError(
          Exit.FAILED,
          `gave up waiting for the ${what} (still ${backup.status}); 'berth backup list' shows it`,
        );
      const pct = backup.progress === null ? "" : ` ${Math.round(backup.progress * 100)}%`;
      line.show(`${what}: ${backup.status === "pending" ? "waiting for the box" : `running${pct}`}`);
      await sleep(POLL_MS);
    }
  } finally {
    line.done();
  }
}

/** The full snapshot id for an id or a prefix of one (restic's short ids are 8 characters). */
async function findSnapshot(api: ApiClient, workspaceId: string, ref: string): Promise<Snapshot> {
  if (!/^[0-9a-f]{4,64}$/.test(ref))
    throw new ClientError(Exit.USAGE, `'${ref}' is not a snapshot id (hex, as 'berth backup list' shows)`);
  const list = await api.call<BackupList>("GET", `/api/v1/workspaces/${workspaceId}/backups`);
  if (list.repositoryError)
    throw new ClientError(Exit.FAILED, `the backup repository: ${list.repositoryError}`);
  const matches = list.snapshots.filter((s) => s.id.startsWith(ref));
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1)
    throw new ClientError(Exit.USAGE, `more than one snapshot starts with '${ref}'; give more of its id`);
  throw new ClientError(Exit.NOT_FOUND, `no snapshot '${ref}' (see 'berth backup list')`);
}

interface NotificationSummary {
  workspaceId: string;
  kind: string;
  body: string;
  createdAt: string;
}

/** Waits for the restore's outcome: the notification the control plane stores when the box reports it. */
async function followRestore(
  api: ApiClient,
  workspaceId: string,
  since: number,
  out: NodeJS.WriteStream,
): Promise<NotificationSummary> {
  const line = progressLine(out);
  const deadline = Date.now() + FOLLOW_TIMEOUT_MS;
  try {
    for (;;) {
      const { notifications } = await api.poll<{ notifications: NotificationSummary[] }>(
        "/api/v1/notifications",
      );
      const outcome = notifications.find(
        (n) =>
          n.workspaceId === workspaceId &&
          (n.kind === "restore_done" || n.kind === "restore_failed") &&
          Date.parse(n.createdAt) >= since,
      );
      if (outcome) return outcome;
      if (Date.now() > deadline)
        throw new ClientError(
          Exit.FAILED,
          "gave up waiting for the restore to finish; it may still be running",
        );
      line.show("restore: restoring the files on the box");
      await sleep(POLL_MS);
    }
  } finally {
    line.done();
  }
}

function describeRun(run: BackupRun): string {
  if (run.status === "failed") return `failed: ${run.error ?? "unknown error"}`;
  const parts = [`snapshot ${run.snapshotId?.slice(0, 8) ?? "?"}`];
  if (run.files !== null) parts.push(`${run.files} files`);
  if (run.bytesAdded !== null) parts.push(`${size(run.bytesAdded)} added`);
  if (run.durationMs !== null) parts.push(`${(run.durationMs / 1000).toFixed(1)}s`);
  return parts.join(", ");
}

export async function backupCommand(args: string[], io: Io, deps: CommandDeps): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      json: { type: "boolean" },
      "no-wait": { type: "boolean" },
      yes: { type: "boolean", short: "y" },
    },
  });
  const [sub, ref, snapshotRef, ...paths] = positionals;
  if (!sub || !["list", "create", "restore"].includes(sub) || !ref) throw deps.usage("backup");
  if (sub !== "restore" && snapshotRef !== undefined) throw deps.usage("backup");
  if (sub === "restore" && !snapshotRef) throw deps.usage("backup");
  if (sub === "restore" && !values.yes)
    throw new ClientError(
      Exit.USAGE,
      "'backup restore' replaces files in the workspace (a safety snapshot is taken first); add --yes to confirm",
    );
  const json = values.json === true;
  const wait = values["no-wait"] !== true;
  // With --json, stdout carries the result only; progress goes to stderr either way.
  const api = deps.connect();
  const w = await findWorkspace(api, ref);

  if (sub === "list") {
    const list = await api.call<BackupList>("GET", `/api/v1/workspaces/${w.id}/backups`);
    if (json) {
      io.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      return Exit.OK;
    }
    if (list.repositoryError)
      io.stderr.write(`the backup repository could not be read: ${list.repositoryError}\n`);
    const running = list.runs.find((r) => r.status === "pending" || r.status === "running");
    if (running) io.stderr.write(`A ${running.trigger} backup is ${running.status}.\n`);
    if (!list.snapshots.length)
      io.stderr.write(`No snapshots yet. Make one: berth backup create ${w.name}\n`);
    else
      io.stdout.write(
        table([
          ["SNAPSHOT", "TIME", "TRIGGER", "FILES", "ADDED"],
          ...list.snapshots.map((s) => [
            s.shortId,
            s.time.replace(/\.\d+/, ""),
            s.trigger ?? "-",
            s.files === null ? "-" : String(s.files),
            size(s.bytesAdded),
          ]),
        ]),
      );
    return Exit.OK;
  }

  if (sub === "create") {
    const { backup } = await api.call<{ backup: BackupRun }>("POST", `/api/v1/workspaces/${w.id}/backups`);
    const run = wait ? await followRun(api, w.id, backup.id, io.stderr, "backup") : backup;
    if (json) io.stdout.write(`${JSON.stringify({ backup: run })}\n`);
    else if (!wait) io.stderr.write(`${w.name}: backup ${run.id} queued\n`);
    else
      io.stderr.write(
        `${w.name}: backup ${run.status === "succeeded" ? "done" : run.status}: ${describeRun(run)}\n`,
      );
    return run.status === "failed" ? Exit.FAILED : Exit.OK;
  }

  // restore
  const snapshot = await findSnapshot(api, w.id, snapshotRef!);
  const { safetyBackup } = await api.call<{ safetyBackup: BackupRun }>(
    "POST",
    `/api/v1/workspaces/${w.id}/backups/${snapshot.id}/restore`,
    { paths },
  );
  // The outcome comes after the safety run this restore started: both times are the server's. This
  // machine's clock may be off by minutes (an earlier restore's outcome would then pass for this one's, or
  // this one's never would); the second is for the database's and the control plane's clocks.
  const since = Date.parse(safetyBackup.createdAt) - 1_000;
  const what = paths.length ? paths.join(", ") : "all of user/";
  if (!wait) {
    if (json) io.stdout.write(`${JSON.stringify({ snapshot: snapshot.id, paths, safetyBackup })}\n`);
    else io.stderr.write(`${w.name}: restore of ${snapshot.shortId} (${what}) queued\n`);
    return Exit.OK;
  }
  const safety = await followRun(api, w.id, safetyBackup.id, io.stderr, "safety snapshot");
  if (safety.status === "failed") {
    if (json)
      io.stdout.write(
        `${JSON.stringify({ snapshot: snapshot.id, paths, safetyBackup: safety, restored: false })}\n`,
      );
    throw new ClientError(
      Exit.FAILED,
      `the safety snapshot failed, nothing was restored: ${safety.error ?? "unknown error"}`,
    );
  }
  const outcome = await followRestore(api, w.id, since, io.stderr);
  const ok = outcome.kind === "restore_done";
  if (json)
    io.stdout.write(
      `${JSON.stringify({ snapshot: snapshot.id, paths, safetyBackup: safety, restored: ok, message: outcome.body })}\n`,
    );
  else if (ok)
    io.stderr.write(
      `${w.name}: restored ${what} from ${snapshot.shortId}; the state before is snapshot ${safety.snapshotId?.slice(0, 8) ?? "?"} (restore it to undo)\n`,
    );
  if (!ok) throw new ClientError(Exit.FAILED, outcome.body);
  return Exit.OK;
}

export async function exportCommand(args: string[], io: Io, deps: CommandDeps): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: { output: { type: "string", short: "o" } },
  });
  const [ref, snapshotRef] = positionals;
  if (!ref || !snapshotRef || positionals.length > 2) throw deps.usage("export");
  const toStdout = values.output === undefined || values.output === "-";
  if (toStdout && io.stdout.isTTY)
    throw new ClientError(
      Exit.USAGE,
      "the export is a .tar.gz: give a file (-o backup.tar.gz) or redirect stdout",
    );
  const api = deps.connect();
  const w = await findWorkspace(api, ref);
  const snapshot = await findSnapshot(api, w.id, snapshotRef);
  const res = await api.fetch(`/api/v1/workspaces/${w.id}/backups/${snapshot.id}/export`);
  if (!res.ok || !res.body) throw errorFrom(res.status, await res.json().catch(() => undefined), api.url);
  const file = toStdout ? null : values.output!;
  let sink: NodeJS.WritableStream;
  // A regular file: made the owner's alone, and removed if the export breaks off (never a device or a pipe).
  let regular = false;
  if (file) {
    // A workspace's files may hold secrets: the export is the owner's alone to read.
    let fd: number;
    try {
      fd = openSync(file, "w", 0o600);
      // The mode applies only when the file is created: one that was there keeps its own, maybe 0644.
      regular = fstatSync(fd).isFile();
      if (regular) fchmodSync(fd, 0o600);
    } catch (err) {
      throw new ClientError(Exit.USAGE, `cannot write ${file}: ${(err as Error).message}`);
    }
    sink = createWriteStream("", { fd });
  } else sink = io.stdout;
  const line = progressLine(io.stderr);
  let bytes = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (file && io.stderr.isTTY) line.show(`export: ${size(bytes)}`);
      done(null, chunk);
    },
  });
  try {
    const body = Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>);
    await pipeline(body, counted, sink, { end: file !== null });
  } catch (err) {
    if (regular) rmSync(file!, { force: true });
    throw new ClientError(
      Exit.FAILED,
      `the export broke off after ${size(bytes)}: ${(err as Error).message}`,
    );
  } finally {
    line.done();
  }
  if (file) io.stderr.write(`${w.name}: snapshot ${snapshot.shortId} exported to ${file} (${size(bytes)})\n`);
  return Exit.OK;
}
