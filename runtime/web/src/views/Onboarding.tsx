import { useState } from "preact/hooks";
import { ApiError, api, humanError, type Session } from "../api.ts";
import { href } from "../router.ts";
import { Field, fieldAria } from "../ui/Field.tsx";

type Source = "new" | "existing" | "git";
interface Answers {
  project: { name: string; source: Source; url?: string };
  goal: string;
  stack: string;
  runCommand: string;
  testCommand: string;
  conventions: string;
  permissions: {
    edit: boolean;
    commands: "ask" | "project" | "any";
    git: "ask" | "commit" | "push";
    web: boolean;
  };
  personal: string;
}
interface Draft {
  claudeMd: string;
  generated: string;
  permissions: { allow: string[]; deny: string[] };
  personal: string | null;
}
interface Status {
  id: string;
  state: "pending" | "done" | "failed";
  error: string | null;
}

const STEPS = ["Project", "The work", "Permissions", "Review"] as const;
const PROJECT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * The onboarding interview: four short steps (project, the work, what Claude may do, review), then the
 * agent writes the reviewed files into the project; from there one button starts a guided session.
 */
export function Onboarding({ id }: { id: string }) {
  const [step, setStep] = useState(0);
  const [a, setA] = useState<Answers>({
    project: { name: "", source: "new", url: "" },
    goal: "",
    stack: "",
    runCommand: "",
    testCommand: "",
    conventions: "",
    permissions: { edit: true, commands: "project", git: "commit", web: false },
    personal: "",
  });
  const [draft, setDraft] = useState<Draft | null>(null);
  /**
   * The permission rules as typed, one a line: split only when the files are written. Splitting on every
   * keystroke trimmed away the space being typed and the new line being started.
   */
  const [rules, setRules] = useState({ allow: "", deny: "" });
  const [problem, setProblem] = useState<{ field: string; text: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<Status | null>(null);
  const [busy, setBusy] = useState(false);

  const body = () => ({
    ...a,
    project: a.project.source === "git" ? a.project : { name: a.project.name, source: a.project.source },
    conventions: a.conventions || undefined,
    personal: a.personal || undefined,
    runCommand: a.runCommand || undefined,
    testCommand: a.testCommand || undefined,
  });
  const problemOf = (field: string) => (problem?.field === field ? problem.text : null);
  const fail = (err: unknown) => {
    if (err instanceof ApiError && err.status === 400) {
      const m = /^body\.(?:answers\.)?([\w.[\]]+): (.*)$/.exec(err.message);
      if (m) {
        const field = m[1]!;
        setProblem({ field, text: m[2]! });
        setStep(
          field.startsWith("project") ? 0 : field.startsWith("permissions") ? 2 : field === "draft" ? 3 : 1,
        );
        return;
      }
    }
    setError(humanError(err));
  };

  const next = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setProblem(null);
    if (step === 0) {
      if (!PROJECT.test(a.project.name))
        return setProblem({
          field: "project.name",
          text: "Letters, digits, dots, dashes or underscores; no spaces.",
        });
      if (a.project.source === "git" && !a.project.url)
        return setProblem({ field: "project.url", text: "Paste the repository's URL." });
    }
    if (step === 1 && !a.goal.trim())
      return setProblem({ field: "goal", text: "Say in a sentence what to build." });
    if (step === 2) {
      setBusy(true);
      try {
        const r = await api<{ draft: Draft }>(`/api/v1/workspaces/${id}/onboarding/draft`, {
          method: "POST",
          body: { answers: body() },
        });
        setDraft(r.draft);
        setRules({
          allow: r.draft.permissions.allow.join("\n"),
          deny: r.draft.permissions.deny.join("\n"),
        });
      } catch (err) {
        return fail(err);
      } finally {
        setBusy(false);
      }
    }
    setStep(step + 1);
  };

  const apply = async () => {
    setError(null);
    setBusy(true);
    try {
      const r = await api<{ onboarding: Status }>(`/api/v1/workspaces/${id}/onboarding`, {
        method: "POST",
        body: {
          answers: body(),
          draft: draft && { ...draft, permissions: { allow: lines(rules.allow), deny: lines(rules.deny) } },
        },
      });
      let s = r.onboarding;
      setStatus(s);
      while (s.state === "pending") {
        await new Promise((res) => setTimeout(res, 700));
        s = (await api<{ onboarding: Status }>(`/api/v1/workspaces/${id}/onboarding/${s.id}`)).onboarding;
        setStatus(s);
      }
    } catch (err) {
      fail(err);
    } finally {
      setBusy(false);
    }
  };

  /** Busy until the terminal opens: a second click would start a second Claude on the same project. */
  const startGuided = async () => {
    if (busy) return;
    setError(null);
    setBusy(true);
    try {
      const r = await api<{ session: Session }>(`/api/v1/workspaces/${id}/sessions`, {
        method: "POST",
        body: { mode: "guided", project: a.project.name, task: a.goal.trim().slice(0, 4000) },
      });
      location.hash = href.terminal(r.session.id);
    } catch (err) {
      setError(humanError(err));
      setBusy(false);
    }
  };

  const text = (field: keyof Answers, label: string, hint: string, multiline = false) => {
    const v = a[field] as string;
    const set = (value: string) => setA({ ...a, [field]: value });
    const aria = fieldAria(`ob-${field}`, problemOf(field), hint);
    return (
      <Field id={`ob-${field}`} label={label} hint={hint} problem={problemOf(field)}>
        {multiline ? (
          <textarea
            id={`ob-${field}`}
            rows={3}
            value={v}
            {...aria}
            onInput={(e) => set((e.target as HTMLTextAreaElement).value)}
          />
        ) : (
          <input
            id={`ob-${field}`}
            autoComplete="off"
            value={v}
            {...aria}
            onInput={(e) => set((e.target as HTMLInputElement).value)}
          />
        )}
      </Field>
    );
  };
  const perm = a.permissions;
  const setPerm = (p: Partial<Answers["permissions"]>) => setA({ ...a, permissions: { ...perm, ...p } });

  return (
    <main class="page wizard">
      <nav class="crumbs">
        <a href={href.workspace(id)}>← Workspace</a>
      </nav>
      <h1>Set up a project</h1>
      <ol class="steps" aria-label="Steps">
        {STEPS.map((s, i) => (
          <li key={s} aria-current={i === step ? "step" : undefined} class={i === step ? "current" : ""}>
            {s}
          </li>
        ))}
      </ol>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {step < 3 && (
        <form class="panel wizard-fields" onSubmit={next} noValidate>
          {step === 0 && (
            <>
              <Field
                id="ob-project"
                label="Project folder"
                hint="Under ~/projects."
                problem={problemOf("project.name")}
              >
                <input
                  id="ob-project"
                  autoComplete="off"
                  autoCapitalize="none"
                  spellcheck={false}
                  value={a.project.name}
                  {...fieldAria("ob-project", problemOf("project.name"), "Under ~/projects.")}
                  onInput={(e) =>
                    setA({ ...a, project: { ...a.project, name: (e.target as HTMLInputElement).value } })
                  }
                />
              </Field>
              <fieldset class="choices">
                <legend>Where the code comes from</legend>
                {(
                  [
                    ["new", "A new, empty folder"],
                    ["git", "Clone a git repository"],
                    ["existing", "A folder already in the workspace"],
                  ] as const
                ).map(([value, label]) => (
                  <label key={value}>
                    <input
                      type="radio"
                      name="source"
                      checked={a.project.source === value}
                      onChange={() => setA({ ...a, project: { ...a.project, source: value } })}
                    />
                    {label}
                  </label>
                ))}
              </fieldset>
              {a.project.source === "git" && (
                <Field
                  id="ob-url"
                  label="Repository URL"
                  hint="https://, ssh:// or git@host:path"
                  problem={problemOf("project.url")}
                >
                  <input
                    id="ob-url"
                    autoComplete="off"
                    autoCapitalize="none"
                    spellcheck={false}
                    value={a.project.url}
                    {...fieldAria("ob-url", problemOf("project.url"), "https://, ssh:// or git@host:path")}
                    onInput={(e) =>
                      setA({ ...a, project: { ...a.project, url: (e.target as HTMLInputElement).value } })
                    }
                  />
                </Field>
              )}
            </>
          )}
          {step === 1 && (
            <>
              {text("goal", "What to build", "A sentence or two: this becomes Claude's first task.", true)}
              {text("stack", "Language and stack", "For example: TypeScript, React, Postgres.")}
              {text("runCommand", "How to run it", "For example: npm run dev")}
              {text("testCommand", "How to test it", "For example: npm test")}
              {text(
                "conventions",
                "Conventions",
                "Style, naming, commit rules: anything Claude should follow.",
                true,
              )}
            </>
          )}
          {step === 2 && (
            <>
              <fieldset class="choices">
                <legend>Claude may, without asking</legend>
                <label>
                  <input
                    type="checkbox"
                    checked={perm.edit}
                    onChange={(e) => setPerm({ edit: (e.target as HTMLInputElement).checked })}
                  />
                  Edit files
                </label>
                <label>
                  <input
                    type="checkbox"
                    checked={perm.web}
                    onChange={(e) => setPerm({ web: (e.target as HTMLInputElement).checked })}
                  />
                  Fetch web pages
                </label>
              </fieldset>
              <fieldset class="choices">
                <legend>Commands</legend>
                {(
                  [
                    ["ask", "Ask before every command"],
                    ["project", "Run the run and test commands; ask for others"],
                    ["any", "Run any command"],
                  ] as const
                ).map(([value, label]) => (
                  <label key={value}>
                    <input
                      type="radio"
                      name="commands"
                      checked={perm.commands === value}
                      onChange={() => setPerm({ commands: value })}
                    />
                    {label}
                  </label>
                ))}
              </fieldset>
              <fieldset class="choices">
                <legend>Git</legend>
                {(
                  [
                    ["ask", "Ask before committing"],
                    ["commit", "Commit; ask before pushing"],
                    ["push", "Commit and push"],
                  ] as const
                ).map(([value, label]) => (
                  <label key={value}>
                    <input
                      type="radio"
                      name="git"
                      checked={perm.git === value}
                      onChange={() => setPerm({ git: value })}
                    />
                    {label}
                  </label>
                ))}
              </fieldset>
              {text(
                "personal",
                "Your preferences (every project)",
                "Kept in ~/.claude/CLAUDE.md on the workspace.",
                true,
              )}
            </>
          )}
          <div class="form-actions">
            {step > 0 && (
              <button type="button" onClick={() => setStep(step - 1)}>
                Back
              </button>
            )}
            <button type="submit" class="primary" disabled={busy}>
              {step === 2 ? "Review files" : "Next"}
            </button>
          </div>
        </form>
      )}
      {step === 3 && draft && (
        <section class="panel wizard-fields" aria-labelledby="review-h">
          <h2 id="review-h">Review before writing</h2>
          <p class="muted">
            CLAUDE.md is written only if the project has none; the brief is replaced on every run, so your own
            notes belong in CLAUDE.md.
          </p>
          <Field id="rv-claude" label="CLAUDE.md">
            <textarea
              id="rv-claude"
              rows={6}
              value={draft.claudeMd}
              onInput={(e) => setDraft({ ...draft, claudeMd: (e.target as HTMLTextAreaElement).value })}
            />
          </Field>
          <Field id="rv-generated" label=".claude/berth-generated.md">
            <textarea
              id="rv-generated"
              rows={12}
              value={draft.generated}
              onInput={(e) => setDraft({ ...draft, generated: (e.target as HTMLTextAreaElement).value })}
            />
          </Field>
          <Field id="rv-allow" label="Allowed without asking (one rule a line)">
            <textarea
              id="rv-allow"
              rows={6}
              value={rules.allow}
              onInput={(e) => setRules({ ...rules, allow: (e.target as HTMLTextAreaElement).value })}
            />
          </Field>
          <Field id="rv-deny" label="Never allowed (one rule a line)">
            <textarea
              id="rv-deny"
              rows={5}
              value={rules.deny}
              onInput={(e) => setRules({ ...rules, deny: (e.target as HTMLTextAreaElement).value })}
            />
          </Field>
          {status?.state === "done" ? (
            <div role="status">
              <p>The files are written in ~/projects/{a.project.name}.</p>
              <button type="button" class="primary" onClick={startGuided} disabled={busy}>
                Start Claude on it
              </button>
            </div>
          ) : status?.state === "failed" ? (
            <p class="error" role="alert">
              Could not set up the project: {status.error}
            </p>
          ) : status?.state === "pending" ? (
            <p role="status">Writing the files…</p>
          ) : null}
          <div class="form-actions">
            <button type="button" onClick={() => setStep(2)} disabled={busy}>
              Back
            </button>
            {status?.state !== "done" && (
              <button type="button" class="primary" onClick={apply} disabled={busy}>
                Write the files
              </button>
            )}
          </div>
        </section>
      )}
    </main>
  );
}

function lines(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
}
