import { useEffect, useState } from "preact/hooks";
import {
  ApiError,
  api,
  type Build,
  humanError,
  loadOverview,
  type Overview,
  type Session,
  type Workspace,
} from "../api.ts";
import { ago, sessionNameProblem, stateSentence, workspaceFacts } from "../format.ts";
import { onSessionChange, patchSessions } from "../live.ts";
import { href } from "../router.ts";
import { Field, fieldAria } from "../ui/Field.tsx";
import { Backups } from "./Backups.tsx";
import { BoxTelemetry, type Telemetry } from "./BoxTelemetry.tsx";
import { BuildLog } from "./BuildLog.tsx";
import { ClaudeBadge } from "./ClaudeBadge.tsx";
import { Previews } from "./Previews.tsx";
import { Secrets } from "./Secrets.tsx";
import { StateBadge } from "./StateBadge.tsx";

const ACTIONS: Record<string, Array<"hibernate" | "wake" | "destroy">> = {
  ready: ["hibernate", "destroy"],
  unhealthy: ["hibernate", "destroy"],
  hibernated: ["wake", "destroy"],
  failed: ["wake", "hibernate", "destroy"],
};

/** The idle autostop choices offered (the API takes any whole number of minutes from 5 to 1440). */
const IDLE_CHOICES = [15, 30, 60, 120, 240, 480];

/** One workspace: state and actions, the latest build's live log, its sessions and previews. */
export function WorkspaceDetail({ id }: { id: string }) {
  const [ws, setWs] = useState<Workspace | null>(null);
  const [builds, setBuilds] = useState<Build[]>([]);
  const [sessions, setSessions] = useState<Session[]>([]);
  const [overview, setOverview] = useState<Overview | null>(null);
  const [telemetry, setTelemetry] = useState<Telemetry | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);
  const [newSession, setNewSession] = useState("");
  const [sessionProblem, setSessionProblem] = useState<string | null>(null);
  /** While a new session is on its way: a second click would open a second one (or fail as a duplicate). */
  const [opening, setOpening] = useState(false);

  const load = async () => {
    try {
      const [w, b, s, t] = await Promise.all([
        api<{ workspace: Workspace }>(`/api/v1/workspaces/${id}`),
        api<{ builds: Build[] }>(`/api/v1/workspaces/${id}/builds`),
        api<{ sessions: Session[] }>(`/api/v1/workspaces/${id}/sessions`),
        // The box's figures ride on the same refresh; missing ones never hide the rest of the view.
        api<Telemetry>(`/api/v1/workspaces/${id}/telemetry`).catch(() => null),
      ]);
      setWs(w.workspace);
      setBuilds(b.builds);
      setSessions(s.sessions);
      if (t) setTelemetry(t);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) location.hash = href.workspaces();
      else setError(humanError(e));
    }
  };
  useEffect(() => {
    load();
    loadOverview().then(setOverview);
    const t = setInterval(load, 2_000);
    const unfollow = onSessionChange((changed) => setSessions((list) => patchSessions(list, changed)));
    return () => {
      clearInterval(t);
      unfollow();
    };
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
      setError(humanError(e));
    }
  };

  const createSession = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const wrong = sessionNameProblem(newSession);
    if (wrong) {
      setSessionProblem(wrong);
      return;
    }
    if (opening) return;
    setOpening(true);
    try {
      await api(`/api/v1/workspaces/${id}/sessions`, {
        method: "POST",
        body: newSession ? { name: newSession } : {},
      });
      setNewSession("");
      setSessionProblem(null);
      await load();
    } catch (err) {
      if (err instanceof ApiError && (err.field === "name" || err.code === "session_exists"))
        setSessionProblem(
          err.code === "session_exists"
            ? `A session named ${newSession} is already open.`
            : (sessionNameProblem(newSession) ?? "Use lowercase letters, digits and dashes only, up to 32."),
        );
      else setError(humanError(err));
    } finally {
      setOpening(false);
    }
  };

  const keepRunning = async () => {
    await api(`/api/v1/workspaces/${id}/keep-running`, { method: "POST" }).catch((e) =>
      setError(humanError(e)),
    );
    await load();
  };

  const setIdleTimeout = async (value: string) => {
    await api(`/api/v1/workspaces/${id}`, {
      method: "PATCH",
      body: { idleTimeoutMinutes: value === "off" ? null : Number(value) },
    }).catch((e) => setError(humanError(e)));
    await load();
  };

  const closeSession = async (s: Session) => {
    await api(`/api/v1/workspaces/${id}/sessions/${s.id}`, { method: "DELETE" }).catch((e) =>
      setError(humanError(e)),
    );
    await load();
  };

  if (!ws)
    return (
      <main class="page">
        {error ? (
          <p class="error" role="alert">
            {error}
          </p>
        ) : (
          <p class="muted">Loading…</p>
        )}
      </main>
    );
  const latest = builds[0];
  const running = ws.state === "ready" || ws.state === "unhealthy";
  const sessionHint = "Lowercase letters, digits and dashes; empty picks a name.";
  return (
    <main class="page">
      <nav class="crumbs">
        <a href={href.workspaces()}>← Workspaces</a>
      </nav>
      <header class="detail-head">
        <h1>{ws.name}</h1>
        <StateBadge state={ws.state} />
      </header>
      <p class="muted detail-facts">
        {[
          workspaceFacts(ws, overview),
          `created ${ago(ws.createdAt)}`,
          `${ws.state} since ${ago(ws.stateChangedAt)}`,
        ]
          .filter((s) => s && !s.endsWith("never"))
          .join(" · ")}
      </p>
      <p class="detail-state">{stateSentence(ws.state)}</p>
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
                <legend>Delete this workspace, its files and its sessions for good?</legend>
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
            <button key={a} type="button" class={a === "wake" ? "primary" : ""} onClick={() => act(a)}>
              {a === "wake" ? "Wake" : "Hibernate"}
            </button>
          ),
        )}
      </div>
      <label class="idle-setting">
        Hibernate when idle for{" "}
        <select
          value={ws.idleTimeoutMinutes == null ? "off" : String(ws.idleTimeoutMinutes)}
          onChange={(e) => setIdleTimeout((e.target as HTMLSelectElement).value)}
        >
          {IDLE_CHOICES.includes(ws.idleTimeoutMinutes ?? -1) || ws.idleTimeoutMinutes == null ? null : (
            <option value={String(ws.idleTimeoutMinutes)}>{ws.idleTimeoutMinutes} minutes</option>
          )}
          {IDLE_CHOICES.map((m) => (
            <option key={m} value={String(m)}>
              {m < 60 ? `${m} minutes` : `${m / 60} ${m === 60 ? "hour" : "hours"}`}
            </option>
          ))}
          <option value="off">never</option>
        </select>
      </label>
      {running && ws.autostopWarnedAt && (
        <p class="notice" role="alert">
          Nothing has happened here for a while: it hibernates in a few minutes (your files stay).{" "}
          <button type="button" class="primary" onClick={keepRunning}>
            Keep running
          </button>
        </p>
      )}
      {latest && <BuildLog key={latest.id} build={latest} onEnd={() => load()} />}
      <BoxTelemetry telemetry={telemetry} running={running} />

      <section class="panel" aria-labelledby="sessions-h">
        <h2 id="sessions-h">Sessions</h2>
        <p>
          <a class="button" href={href.onboard(id)}>
            Set up a project (guided)
          </a>
        </p>
        {sessions.length === 0 && (
          <p class="muted">
            No session open. A session is a terminal with three panes: Claude Code, logs and a shell.
          </p>
        )}
        <ul class="rows">
          {sessions.map((s) => (
            <li key={s.id}>
              <div class="row-main">
                <a class="session-link" href={href.terminal(s.id)}>
                  {s.name}
                </a>
                <ClaudeBadge claude={s.claude} />
                <span class="muted">
                  {s.lastActivityAt ? `active ${ago(s.lastActivityAt)}` : `opened ${ago(s.createdAt)}`}
                </span>
              </div>
              <div class="row-actions">
                <button type="button" aria-label={`close session ${s.name}`} onClick={() => closeSession(s)}>
                  Close
                </button>
              </div>
            </li>
          ))}
        </ul>
        <form class="inline-form" onSubmit={createSession} noValidate>
          <Field id="session-name" label="New session" hint={sessionHint} problem={sessionProblem}>
            <div class="input-row">
              <input
                id="session-name"
                placeholder="main"
                autoComplete="off"
                autoCapitalize="none"
                spellcheck={false}
                value={newSession}
                {...fieldAria("session-name", sessionProblem, sessionHint)}
                onInput={(e) => {
                  const v = (e.target as HTMLInputElement).value;
                  setNewSession(v);
                  setSessionProblem(sessionNameProblem(v));
                }}
              />
              <button type="submit" disabled={!running || opening}>
                Open session
              </button>
            </div>
          </Field>
          {!running && <p class="muted">Sessions open while the workspace runs.</p>}
        </form>
      </section>
      <Previews workspaceId={id} running={running} />
      <Secrets workspaceId={id} />
      <Backups workspaceId={id} running={running} />
    </main>
  );
}
