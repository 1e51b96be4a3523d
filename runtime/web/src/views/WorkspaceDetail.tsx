import { useEffect, useState } from "preact/hooks";
import { ApiError, api, type Build, type Session, type Workspace } from "../api.ts";
import { href } from "../router.ts";
import { BuildLog } from "./BuildLog.tsx";
import { Previews } from "./Previews.tsx";
import { StateBadge } from "./StateBadge.tsx";

const ACTIONS: Record<string, Array<"hibernate" | "wake" | "destroy">> = {
  ready: ["hibernate", "destroy"],
  unhealthy: ["hibernate", "destroy"],
  hibernated: ["wake", "destroy"],
  failed: ["wake", "hibernate", "destroy"],
};

/** One workspace: state and actions, the latest build's live log, and its sessions. */
export function WorkspaceDetail({ id }: { id: string }) {
  const [ws, setWs] = useState<Workspace | null>(null);
  const [builds, setBuilds] = useState<Build[]>([]);
  const [sessions, setSessions] = useState<Session[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);
  const [newSession, setNewSession] = useState("");

  const load = async () => {
    try {
      const [w, b, s] = await Promise.all([
        api<{ workspace: Workspace }>(`/api/v1/workspaces/${id}`),
        api<{ builds: Build[] }>(`/api/v1/workspaces/${id}/builds`),
        api<{ sessions: Session[] }>(`/api/v1/workspaces/${id}/sessions`),
      ]);
      setWs(w.workspace);
      setBuilds(b.builds);
      setSessions(s.sessions);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) location.hash = href.workspaces();
      else setError((e as Error).message);
    }
  };
  useEffect(() => {
    load();
    const t = setInterval(load, 2_000);
    return () => clearInterval(t);
  }, [id]);

  const act = async (action: "hibernate" | "wake" | "destroy") => {
    setError(null);
    setConfirming(false);
    try {
      await api(action === "destroy" ? `/api/v1/workspaces/${id}` : `/api/v1/workspaces/${id}/${action}`, {
        method: action === "destroy" ? "DELETE" : "POST",
      });
      await load();
    } catch (e) {
      setError((e as Error).message);
    }
  };

  const createSession = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      await api(`/api/v1/workspaces/${id}/sessions`, {
        method: "POST",
        body: newSession ? { name: newSession } : {},
      });
      setNewSession("");
      await load();
    } catch (err) {
      setError((err as Error).message);
    }
  };

  const closeSession = async (s: Session) => {
    await api(`/api/v1/workspaces/${id}/sessions/${s.id}`, { method: "DELETE" }).catch((e: Error) =>
      setError(e.message),
    );
    await load();
  };

  if (!ws) return <main class="page">{error ? <p role="alert">{error}</p> : <p>Loading…</p>}</main>;
  const latest = builds[0];
  return (
    <main class="page">
      <nav>
        <a href={href.workspaces()}>← Workspaces</a>
      </nav>
      <h1>
        {ws.name} <StateBadge state={ws.state} />
      </h1>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="actions">
        {(ACTIONS[ws.state] ?? []).map((a) =>
          a === "destroy" ? (
            confirming ? (
              <fieldset key={a} class="confirm">
                <legend>Delete everything on this workspace?</legend>
                <button type="button" class="danger" onClick={() => act("destroy")}>
                  Yes, destroy
                </button>
                <button type="button" onClick={() => setConfirming(false)}>
                  Keep it
                </button>
              </fieldset>
            ) : (
              <button key={a} type="button" class="danger" onClick={() => setConfirming(true)}>
                Destroy…
              </button>
            )
          ) : (
            <button key={a} type="button" onClick={() => act(a)}>
              {a === "wake" ? "Wake" : "Hibernate"}
            </button>
          ),
        )}
      </div>
      {latest && <BuildLog key={latest.id} build={latest} onEnd={() => load()} />}

      <section aria-labelledby="sessions-h">
        <h2 id="sessions-h">Sessions</h2>
        <ul class="sessions">
          {sessions.map((s) => (
            <li key={s.id}>
              <a href={href.terminal(s.id)}>{s.name}</a>
              <button type="button" aria-label={`close session ${s.name}`} onClick={() => closeSession(s)}>
                Close
              </button>
            </li>
          ))}
        </ul>
        <form class="inline" onSubmit={createSession}>
          <label for="session-name">New session</label>
          <input
            id="session-name"
            placeholder="main"
            pattern="[a-z0-9-]{1,32}"
            title="lowercase letters, digits and '-', up to 32"
            value={newSession}
            onInput={(e) => setNewSession((e.target as HTMLInputElement).value)}
          />
          <button type="submit" disabled={ws.state !== "ready"}>
            Open session
          </button>
        </form>
      </section>
      <Previews workspaceId={id} />
    </main>
  );
}
