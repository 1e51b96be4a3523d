import { useEffect, useState } from "preact/hooks";
import { ApiError, api, humanError } from "../api.ts";
import { ago } from "../format.ts";
import { href } from "../router.ts";
import { CopyButton } from "../ui/CopyButton.tsx";
import { Field, fieldAria } from "../ui/Field.tsx";

interface ApiToken {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  expiresAt: string;
  revokedAt: string | null;
}

const DAYS = [30, 90, 365];
const NAME_HINT = "What it is for: the machine or script that will use it.";

const day = (iso: string) => new Date(iso).toLocaleDateString(undefined, { dateStyle: "medium" });

function status(t: ApiToken): string {
  if (t.revokedAt) return `revoked ${ago(t.revokedAt)}`;
  if (Date.parse(t.expiresAt) <= Date.now()) return `expired ${day(t.expiresAt)}`;
  return `expires ${day(t.expiresAt)} · ${t.lastUsedAt ? `used ${ago(t.lastUsedAt)}` : "never used"}`;
}

/**
 * Personal API tokens for the `berth` client and scripts: create one (its secret is shown once, with the
 * line that logs the client in), list them, revoke one. The secret is kept only in this component's state
 * until the page is left.
 */
export function ApiTokensPage() {
  const [tokens, setTokens] = useState<ApiToken[] | null>(null);
  const [name, setName] = useState("");
  const [days, setDays] = useState(90);
  const [problem, setProblem] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState<{ name: string; secret: string } | null>(null);
  /** While a creation is on its way: a second click would mint a second token whose secret nobody sees. */
  const [busy, setBusy] = useState(false);

  const load = () =>
    api<{ tokens: ApiToken[] }>("/api/v1/tokens")
      .then((r) => setTokens(r.tokens))
      .catch((e) => setError(humanError(e)));
  useEffect(() => {
    load();
  }, []);

  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    if (!name.trim()) return setProblem("Name the token, e.g. laptop.");
    if (busy) return;
    setBusy(true);
    try {
      const r = await api<{ token: ApiToken; secret: string }>("/api/v1/tokens", {
        method: "POST",
        body: { name: name.trim(), expiresInDays: days },
      });
      setCreated({ name: r.token.name, secret: r.secret });
      setName("");
      setProblem(null);
      await load();
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) setProblem(err.message.replace(/^body\.\w+: /, ""));
      else setError(humanError(err));
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (t: ApiToken) => {
    setError(null);
    await api(`/api/v1/tokens/${t.id}`, { method: "DELETE" }).catch((e) => setError(humanError(e)));
    await load();
  };

  const login = `berth login ${location.origin}`;
  return (
    <main class="page tokens">
      <div class="page-head">
        <h1>API tokens</h1>
        <a href={href.workspaces()}>Workspaces</a>
      </div>
      <p class="muted">
        A token signs the <code>berth</code> command-line client (or a script) in as you. Anyone holding it
        can use your workspaces until it expires or you revoke it.
      </p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {created && (
        <section class="panel token-created" aria-labelledby="token-created-h">
          <h2 id="token-created-h">Token “{created.name}” created</h2>
          <p>Copy it now: it is not shown again.</p>
          <div class="copy-line">
            <code data-testid="token-secret">{created.secret}</code>
            <CopyButton text={created.secret} name="copy the token" />
          </div>
          <p class="muted">Then log the client in and paste the token when it asks:</p>
          <div class="copy-line">
            <code data-testid="token-login">{login}</code>
            <CopyButton text={login} name="copy the login command" />
          </div>
          <button type="button" onClick={() => setCreated(null)}>
            Done
          </button>
        </section>
      )}
      <section class="panel" aria-labelledby="token-new-h">
        <h2 id="token-new-h">New token</h2>
        <form class="inline-form wizard-fields" onSubmit={create} noValidate>
          <Field id="token-name" label="Name" hint={NAME_HINT} problem={problem}>
            <input
              id="token-name"
              autoComplete="off"
              maxLength={64}
              value={name}
              {...fieldAria("token-name", problem, NAME_HINT)}
              onInput={(e) => setName((e.target as HTMLInputElement).value)}
            />
          </Field>
          <Field id="token-days" label="Expires after">
            <div class="input-row">
              <select
                id="token-days"
                value={String(days)}
                onChange={(e) => setDays(Number((e.target as HTMLSelectElement).value))}
              >
                {DAYS.map((d) => (
                  <option key={d} value={String(d)}>
                    {d} days
                  </option>
                ))}
              </select>
              <button type="submit" disabled={busy}>
                Create token
              </button>
            </div>
          </Field>
        </form>
      </section>
      <section class="panel" aria-labelledby="token-list-h">
        <h2 id="token-list-h">Your tokens</h2>
        {tokens === null ? (
          <p class="muted">Loading…</p>
        ) : tokens.length === 0 ? (
          <p class="muted">No tokens yet.</p>
        ) : (
          <ul class="rows">
            {tokens.map((t) => (
              <li key={t.id} class={t.revokedAt ? "revoked" : ""}>
                <div class="row-main">
                  <strong>{t.name}</strong> <code>{t.prefix}…</code>
                  <span class="muted">{status(t)}</span>
                </div>
                {!t.revokedAt && (
                  <div class="row-actions">
                    <button type="button" aria-label={`revoke token ${t.name}`} onClick={() => revoke(t)}>
                      Revoke
                    </button>
                  </div>
                )}
              </li>
            ))}
          </ul>
        )}
      </section>
    </main>
  );
}
