import { useEffect, useState } from "preact/hooks";
import { api, humanError } from "../api.ts";
import { ago, bytes } from "../format.ts";

interface BackupRun {
  id: string;
  trigger: string;
  status: "pending" | "running" | "succeeded" | "failed";
  progress: number | null;
  snapshotId: string | null;
  bytesAdded: number | null;
  files: number | null;
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
}
interface SnapshotView {
  id: string;
  shortId: string;
  time: string;
  tags: string[];
  trigger: string | null;
  bytesAdded: number | null;
  files: number | null;
}

const TRIGGER: Record<string, string> = {
  nightly: "nightly",
  "pre-stop": "before stop",
  manual: "by you",
  "pre-restore": "safety, before a restore",
};

/**
 * Backups of the workspace: the last run, when the next nightly one comes, back up now (with live state),
 * the snapshots with restore and download (.tar.gz, also while hibernated).
 */
export function Backups({ workspaceId, running }: { workspaceId: string; running: boolean }) {
  const [runs, setRuns] = useState<BackupRun[]>([]);
  const [snapshots, setSnapshots] = useState<SnapshotView[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const base = `/api/v1/workspaces/${workspaceId}/backups`;

  const load = () =>
    api<{ runs: BackupRun[]; snapshots: SnapshotView[]; repositoryError: string | null }>(base)
      .then((r) => {
        setRuns(r.runs);
        setSnapshots(r.snapshots);
        setError(r.repositoryError);
      })
      .catch((e) => setError(humanError(e)));
  const active = runs.find((r) => r.status === "pending" || r.status === "running");
  useEffect(() => {
    load();
    // Faster while a run is in progress, so its state is live.
    const t = setInterval(load, active ? 2_000 : 15_000);
    return () => clearInterval(t);
  }, [workspaceId, Boolean(active)]);

  const last = runs.find((r) => r.status === "succeeded" || r.status === "failed");

  const backUp = async () => {
    setError(null);
    setNote(null);
    try {
      await api(base, { method: "POST" });
      await load();
    } catch (e) {
      setError(humanError(e));
    }
  };
  const restore = async (s: SnapshotView) => {
    if (
      !window.confirm(
        `Restore user/ to the snapshot of ${new Date(s.time).toLocaleString()}? Sessions restart; a safety snapshot is taken first.`,
      )
    )
      return;
    setError(null);
    try {
      await api(`${base}/${s.id}/restore`, { method: "POST", body: {} });
      setNote("Restore started. You get a notification when it is done.");
      await load();
    } catch (e) {
      setError(humanError(e));
    }
  };

  return (
    <section class="panel" aria-labelledby="backups-h">
      <h2 id="backups-h">Backups</h2>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {note && <p role="status">{note}</p>}
      <p class="muted">
        Last backup:{" "}
        {last
          ? `${last.status === "succeeded" ? "done" : "failed"} ${ago(last.finishedAt ?? last.createdAt)}${
              last.error ? ` (${last.error})` : ""
            }`
          : "none yet"}
        . Nightly between 01:00 and 05:00 UTC, and before every stop.
      </p>
      <div class="row-actions">
        <button type="button" onClick={backUp} disabled={!running || Boolean(active)}>
          {active
            ? `Backing up… ${active.progress !== null ? `${Math.round(active.progress * 100)}%` : ""}`
            : "Back up now"}
        </button>
      </div>
      {!running && <p class="muted">Backups run while the workspace runs; downloads work anytime.</p>}
      <ul class="rows" aria-label="snapshots">
        {snapshots.map((s) => (
          <li key={s.id}>
            <div class="row-main">
              <span>
                <strong>{ago(s.time)}</strong> {TRIGGER[s.trigger ?? ""] ?? s.trigger ?? ""}
              </span>
              <span class="muted">
                {s.shortId}
                {s.bytesAdded !== null ? ` · +${bytes(s.bytesAdded)}` : ""}
                {s.files !== null ? ` · ${s.files} files` : ""}
              </span>
            </div>
            <div class="row-actions">
              <a class="button" href={`${base}/${s.id}/export`} download>
                Download
              </a>
              <button
                type="button"
                disabled={!running}
                onClick={() => restore(s)}
                aria-label={`Restore snapshot ${s.shortId}`}
              >
                Restore
              </button>
            </div>
          </li>
        ))}
      </ul>
    </section>
  );
}
