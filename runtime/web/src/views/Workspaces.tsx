import { useEffect, useState } from "preact/hooks";
import { ApiError, api, type Workspace } from "../api.ts";
import { href } from "../router.ts";
import { StateBadge } from "./StateBadge.tsx";

/** The dashboard: the user's workspaces, or a form to create the first one. */
export function Workspaces() {
  const [list, setList] = useState<Workspace[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [name, setName] = useState("workspace");
  const [busy, setBusy] = useState(false);

  const load = () =>
    api<{ workspaces: Workspace[] }>("/api/v1/workspaces")
      .then((r) => setList(r.workspaces))
      .catch((e: Error) => setError(e.message));
  useEffect(() => {
    load();
    const t = setInterval(load, 3_000);
    return () => clearInterval(t);
  }, []);

  const create = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await api<{ workspace: Workspace }>("/api/v1/workspaces", { method: "POST", body: { name } });
      location.hash = href.workspace(r.workspace.id);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="page">
      <h1>Workspaces</h1>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {list === null && <p>Loading…</p>}
      {list && list.length > 0 && (
        <ul class="cards">
          {list.map((w) => (
            <li key={w.id}>
              <a class="card" href={href.workspace(w.id)}>
                <span class="card-title">{w.name}</span>
                <StateBadge state={w.state} />
                <span class="muted">
                  {w.serverType} · {w.location} · {w.volumeSizeGb} GB
                </span>
              </a>
            </li>
          ))}
        </ul>
      )}
      {list && list.length === 0 && (
        <form class="create" onSubmit={create}>
          <label for="ws-name">Name your workspace</label>
          <input
            id="ws-name"
            value={name}
            onInput={(e) => setName((e.target as HTMLInputElement).value)}
            maxLength={64}
            required
          />
          <button type="submit" disabled={busy}>
            {busy ? "Creating…" : "Create workspace"}
          </button>
        </form>
      )}
    </main>
  );
}
