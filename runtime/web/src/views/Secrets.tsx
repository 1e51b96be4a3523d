import { useEffect, useState } from "preact/hooks";
import { ApiError, api, humanError } from "../api.ts";
import { ago } from "../format.ts";
import { Field, fieldAria } from "../ui/Field.tsx";

interface SecretInfo {
  name: string;
  updatedAt: string;
}

const NAME = /^[A-Z_][A-Z0-9_]{0,63}$/;
const HINT =
  "Like ANTHROPIC_API_KEY: capitals, digits and underscores. New sessions get it as an environment variable.";

/**
 * The workspace's secrets: listed by name only. A value is typed once and never shown again; saving a known
 * name replaces it. New sessions get the secrets as environment variables.
 */
export function Secrets({ workspaceId }: { workspaceId: string }) {
  const [secrets, setSecrets] = useState<SecretInfo[]>([]);
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [problem, setProblem] = useState<{ field: "name" | "value"; text: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);

  const load = () =>
    api<{ secrets: SecretInfo[] }>(`/api/v1/workspaces/${workspaceId}/secrets`)
      .then((r) => setSecrets(r.secrets))
      .catch((e) => setError(humanError(e)));
  useEffect(() => {
    load();
  }, [workspaceId]);

  const save = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setSaved(null);
    if (!NAME.test(name))
      return setProblem({
        field: "name",
        text: "Use capitals, digits and underscores; start with a letter or _.",
      });
    if (!value) return setProblem({ field: "value", text: "Type the secret's value." });
    try {
      await api(`/api/v1/workspaces/${workspaceId}/secrets/${name}`, { method: "PUT", body: { value } });
      setSaved(name);
      setName("");
      setValue("");
      setProblem(null);
      await load();
    } catch (err) {
      if (err instanceof ApiError && err.status === 400)
        setProblem({
          field: err.message.startsWith("body.value") ? "value" : "name",
          text: err.message.replace(/^(path|body)\.\w+: /, ""),
        });
      else setError(humanError(err));
    }
  };
  const remove = async (n: string) => {
    setError(null);
    await api(`/api/v1/workspaces/${workspaceId}/secrets/${n}`, { method: "DELETE" }).catch((e) =>
      setError(humanError(e)),
    );
    await load();
  };

  return (
    <section class="panel" aria-labelledby="secrets-h">
      <h2 id="secrets-h">Secrets</h2>
      <p class="muted">
        Values are never shown again. Sessions opened from now on get them as environment variables.
      </p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {saved && <p role="status">Saved {saved}.</p>}
      <ul class="rows">
        {secrets.map((s) => (
          <li key={s.name}>
            <div class="row-main">
              <code>{s.name}</code>
              <span class="muted">changed {ago(s.updatedAt)}</span>
            </div>
            <div class="row-actions">
              <button type="button" aria-label={`delete secret ${s.name}`} onClick={() => remove(s.name)}>
                Delete
              </button>
            </div>
          </li>
        ))}
      </ul>
      <form class="inline-form wizard-fields" onSubmit={save} noValidate>
        <Field
          id="secret-name"
          label="Secret name"
          hint={HINT}
          problem={problem?.field === "name" ? problem.text : null}
        >
          <input
            id="secret-name"
            autoComplete="off"
            autoCapitalize="characters"
            spellcheck={false}
            value={name}
            {...fieldAria("secret-name", problem?.field === "name" ? problem.text : null, HINT)}
            onInput={(e) => setName((e.target as HTMLInputElement).value)}
          />
        </Field>
        <Field id="secret-value" label="Value" problem={problem?.field === "value" ? problem.text : null}>
          <div class="input-row">
            <input
              id="secret-value"
              type="password"
              autoComplete="new-password"
              value={value}
              {...fieldAria("secret-value", problem?.field === "value" ? problem.text : null)}
              onInput={(e) => setValue((e.target as HTMLInputElement).value)}
            />
            <button type="submit">Save secret</button>
          </div>
        </Field>
      </form>
    </section>
  );
}
