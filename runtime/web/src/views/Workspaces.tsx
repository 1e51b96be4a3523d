import { useEffect, useState } from "preact/hooks";
import {
  ApiError,
  api,
  humanError,
  loadOverview,
  type Overview,
  type Preview,
  type Session,
  type Workspace,
} from "../api.ts";
import {
  ago,
  BUSY_STATES,
  hostFacts,
  stateSentence,
  workspaceFacts,
  workspaceNameProblem,
} from "../format.ts";
import { onSessionChange, patchSessions } from "../live.ts";
import { href } from "../router.ts";
import { Field, fieldAria } from "../ui/Field.tsx";
import { ClaudeBadge, workspaceClaude } from "./ClaudeBadge.tsx";
import { openPreview } from "./Previews.tsx";
import { StateBadge } from "./StateBadge.tsx";

/**
 * The dashboard: every workspace as a card that says what it is doing, what runs in it and what can be
 * done now; then the create form, or why there is none (the per-user limit, with its number).
 */
export function Workspaces() {
  const [list, setList] = useState<Workspace[] | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [overview, setOverview] = useState<Overview | null>(null);

  const load = () =>
    api<{ workspaces: Workspace[] }>("/api/v1/workspaces")
      .then((r) => {
        setList(r.workspaces);
        setLoadError(null);
      })
      .catch((e) => setLoadError(humanError(e)));
  useEffect(() => {
    load();
    loadOverview().then(setOverview);
    const t = setInterval(load, 3_000);
    return () => clearInterval(t);
  }, []);

  const limit = overview?.limits.workspacesPerUser ?? null;
  const host = hostFacts(overview);
  const atLimit = list !== null && limit !== null && list.length >= limit;
  return (
    <main class="page">
      <div class="page-head">
        <h1>Workspaces</h1>
        {list !== null && limit !== null && (
          <p class="muted">
            {list.length} of {limit} {limit === 1 ? "workspace" : "workspaces"} in use
          </p>
        )}
      </div>
      {overview?.driver.name === "local" && (
        <p class="muted intro">Local mode: workspaces run on this machine{host ? ` (${host})` : ""}.</p>
      )}
      {loadError && (
        <p class="error" role="alert">
          {loadError}
        </p>
      )}
      {list === null && !loadError && <p class="muted">Loading…</p>}
      {list && list.length > 0 && (
        <ul class="cards">
          {list.map((w) => (
            <li key={w.id}>
              <WorkspaceCard workspace={w} overview={overview} onChange={load} />
            </li>
          ))}
        </ul>
      )}
      {list &&
        (atLimit ? (
          <section class="limit" aria-labelledby="limit-h">
            <h2 id="limit-h">New workspace</h2>
            <p>
              You have {list.length} of {limit} {limit === 1 ? "workspace" : "workspaces"}, the most this
              server allows one user. Destroy one to create another.
              {overview?.driver.name === "local" && (
                <>
                  {" "}
                  Whoever runs this server can allow more with <code>BERTH_MAX_WORKSPACES_PER_USER</code>.
                </>
              )}
            </p>
          </section>
        ) : (
          <CreateForm first={list.length === 0} onLimit={load} />
        ))}
    </main>
  );
}

function CreateForm({ first, onLimit }: { first: boolean; onLimit: () => void }) {
  const [name, setName] = useState("workspace");
  const [touched, setTouched] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const [formError, setFormError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const local = touched ? workspaceNameProblem(name) : null;
  const shown = problem ?? local;
  const hint = "Letters, digits, spaces, dots, dashes or underscores; up to 64.";

  const create = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    setFormError(null);
    const wrong = workspaceNameProblem(name);
    if (wrong) {
      setProblem(wrong);
      (document.getElementById("ws-name") as HTMLInputElement | null)?.focus();
      return;
    }
    setBusy(true);
    try {
      const r = await api<{ workspace: Workspace }>("/api/v1/workspaces", {
        method: "POST",
        body: { name: name.trim() },
      });
      location.hash = href.workspace(r.workspace.id);
    } catch (err) {
      if (err instanceof ApiError && err.field === "name") setProblem(humanError(err));
      else if (err instanceof ApiError && err.code === "workspace_limit") onLimit();
      else setFormError(humanError(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form
      class={`create panel${first ? " first" : ""}`}
      onSubmit={create}
      noValidate
      aria-labelledby="create-h"
    >
      <h2 id="create-h">{first ? "Create your first workspace" : "New workspace"}</h2>
      {first && (
        <p class="muted">
          A workspace is a persistent box for Claude Code: its files stay between visits, sessions keep
          running while you are away, and dev servers you start in it show up as previews.
        </p>
      )}
      <Field id="ws-name" label="Name your workspace" hint={hint} problem={shown}>
        <input
          id="ws-name"
          value={name}
          autoComplete="off"
          maxLength={80}
          {...fieldAria("ws-name", shown, hint)}
          onInput={(e) => {
            setName((e.target as HTMLInputElement).value);
            setProblem(null);
          }}
          onBlur={() => setTouched(true)}
        />
      </Field>
      {formError && (
        <p class="error" role="alert">
          {formError}
        </p>
      )}
      <div class="form-actions">
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Creating…" : "Create workspace"}
        </button>
      </div>
    </form>
  );
}

interface Details {
  sessions: Session[];
  previews: Preview[];
}

/** One workspace at a glance: state, facts, sessions and previews, and the actions its state allows. */
function WorkspaceCard({
  workspace: w,
  overview,
  onChange,
}: {
  workspace: Workspace;
  overview: Overview | null;
  onChange: () => void;
}) {
  const [details, setDetails] = useState<Details | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const running = w.state === "ready" || w.state === "unhealthy";

  useEffect(() => {
    let live = true;
    const load = () =>
      Promise.all([
        api<{ sessions: Session[] }>(`/api/v1/workspaces/${w.id}/sessions`),
        running
          ? api<{ previews: Preview[] }>(`/api/v1/workspaces/${w.id}/previews`)
          : Promise.resolve({ previews: [] }),
      ])
        .then(([s, p]) => live && setDetails({ sessions: s.sessions, previews: p.previews }))
        .catch(() => {});
    load();
    const t = setInterval(load, 5_000);
    const unfollow = onSessionChange((changed) =>
      setDetails((d) => d && { ...d, sessions: patchSessions(d.sessions, changed) }),
    );
    return () => {
      live = false;
      clearInterval(t);
      unfollow();
    };
  }, [w.id, running]);

  const act = async (action: "wake" | "hibernate") => {
    setBusy(true);
    setError(null);
    try {
      await api(`/api/v1/workspaces/${w.id}/${action}`, { method: "POST" });
      onChange();
    } catch (e) {
      setError(humanError(e));
    } finally {
      setBusy(false);
    }
  };

  const openFirstSession = async () => {
    setBusy(true);
    setError(null);
    try {
      const r = await api<{ session: Session }>(`/api/v1/workspaces/${w.id}/sessions`, {
        method: "POST",
        body: { name: "main" },
      });
      location.hash = href.terminal(r.session.id);
    } catch (e) {
      setError(humanError(e));
      setBusy(false);
    }
  };

  const sessions = details?.sessions ?? [];
  const lastActivity = sessions
    .map((s) => s.lastActivityAt)
    .filter((t): t is string => Boolean(t))
    .sort()
    .at(-1);
  const facts = workspaceFacts(w, overview);
  return (
    <article class="card" aria-labelledby={`card-${w.id}`}>
      <header class="card-head">
        <h2 class="card-title" id={`card-${w.id}`}>
          <a href={href.workspace(w.id)}>{w.name}</a>
        </h2>
        <StateBadge state={w.state} />
        <ClaudeBadge claude={running ? workspaceClaude(sessions) : null} />
      </header>
      <p class="card-facts muted">
        {[facts, lastActivity ? `active ${ago(lastActivity)}` : `${w.state} ${ago(w.stateChangedAt)}`]
          .filter(Boolean)
          .join(" · ")}
      </p>
      {!running && <p class="card-state">{stateSentence(w.state)}</p>}
      {BUSY_STATES.has(w.state) && (
        <div class="progress" role="progressbar" aria-label={`${w.name} is ${w.state}`} />
      )}
      {running && (
        <dl class="card-list">
          <dt>Sessions</dt>
          <dd>
            {details === null ? (
              <span class="muted">…</span>
            ) : sessions.length === 0 ? (
              <span class="muted">none open</span>
            ) : (
              <ul class="chips">
                {sessions.map((s) => (
                  <li key={s.id}>
                    <a class="chip" href={href.terminal(s.id)}>
                      <span class="chip-icon" aria-hidden="true">
                        ›_
                      </span>
                      {s.name}
                      <ClaudeBadge claude={s.claude} />
                    </a>
                  </li>
                ))}
              </ul>
            )}
          </dd>
          <dt>Previews</dt>
          <dd>
            {details === null ? (
              <span class="muted">…</span>
            ) : details.previews.length === 0 ? (
              <span class="muted">no dev server listening</span>
            ) : (
              <ul class="chips">
                {details.previews.map((p) => (
                  <li key={p.id}>
                    <button type="button" class="chip" onClick={() => openPreview(p)}>
                      <span class="visually-hidden">Open preview </span>:{p.port}
                      {p.framework ? <span class="muted"> {p.framework}</span> : null}
                      <span class="visually-hidden"> of {w.name}</span>
                      <span aria-hidden="true"> ↗</span>
                    </button>
                  </li>
                ))}
              </ul>
            )}
          </dd>
        </dl>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <footer class="card-actions">
        {running &&
          (sessions.length > 0 ? (
            <a class="button primary" href={href.terminal(sessions[0]!.id)}>
              Open terminal
            </a>
          ) : (
            <button
              type="button"
              class="primary"
              disabled={busy || details === null}
              onClick={openFirstSession}
            >
              Start a session
            </button>
          ))}
        {(w.state === "hibernated" || w.state === "failed") && (
          <button type="button" class="primary" disabled={busy} onClick={() => act("wake")}>
            {w.state === "failed" ? "Try again" : "Wake"}
          </button>
        )}
        {running && (
          <button type="button" disabled={busy} onClick={() => act("hibernate")}>
            Hibernate
          </button>
        )}
        <a class="button subtle" href={href.workspace(w.id)}>
          Details<span class="visually-hidden"> of {w.name}</span>
        </a>
      </footer>
    </article>
  );
}
