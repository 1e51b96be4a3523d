import { useEffect, useState } from "preact/hooks";
import { ApiError, api, humanError, type Preview } from "../api.ts";
import { CopyButton } from "../ui/CopyButton.tsx";
import { Field, fieldAria } from "../ui/Field.tsx";

/**
 * Opens a preview in a new tab on its own origin (through a one-time code), or the path form when no
 * preview domain is configured. The tab is opened synchronously so that popup blockers see the click.
 */
export async function openPreview(p: Preview): Promise<void> {
  const tab = window.open("about:blank", "_blank");
  try {
    const { url } = await api<{ url: string }>(`/api/v1/previews/${p.id}/open`, { method: "POST", body: {} });
    if (tab) tab.location.href = url;
  } catch {
    if (tab) tab.location.href = p.pathUrl;
  }
}

function portProblem(port: string): string | null {
  if (port === "") return "Enter the port your dev server listens on.";
  if (!/^\d+$/.test(port)) return "A port is a number, like 5173.";
  const n = Number(port);
  if (n < 1024 || n > 65535) return "Use a port from 1024 to 65535.";
  return null;
}

/**
 * Dev servers on the box: detected by the agent or declared here. Open goes to the preview's own origin;
 * a share link can be made, copied and revoked.
 */
export function Previews({ workspaceId, running }: { workspaceId: string; running: boolean }) {
  const [items, setItems] = useState<Preview[]>([]);
  const [port, setPort] = useState("");
  const [portError, setPortError] = useState<string | null>(null);
  const [links, setLinks] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);

  const load = () =>
    api<{ previews: Preview[] }>(`/api/v1/workspaces/${workspaceId}/previews`)
      .then((r) => setItems(r.previews))
      .catch((e) => setError(humanError(e)));
  useEffect(() => {
    load();
    const t = setInterval(load, 3_000);
    return () => clearInterval(t);
  }, [workspaceId]);

  const declare = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const wrong = portProblem(port);
    if (wrong) {
      setPortError(wrong);
      return;
    }
    try {
      await api(`/api/v1/workspaces/${workspaceId}/previews`, {
        method: "POST",
        body: { port: Number(port) },
      });
      setPort("");
      setPortError(null);
      await load();
    } catch (err) {
      if (err instanceof ApiError && err.field === "port") setPortError(humanError(err));
      else setError(humanError(err));
    }
  };

  const share = async (p: Preview) => {
    setError(null);
    try {
      const { url } = await api<{ url: string }>(`/api/v1/previews/${p.id}/share`, {
        method: "POST",
        body: {},
      });
      setLinks({ ...links, [p.id]: url });
      await load();
    } catch (err) {
      setError(humanError(err));
    }
  };

  const revoke = async (p: Preview) => {
    await api(`/api/v1/previews/${p.id}/share`, { method: "DELETE" }).catch((e) => setError(humanError(e)));
    const { [p.id]: _gone, ...rest } = links;
    setLinks(rest);
    await load();
  };

  return (
    <section class="panel" aria-labelledby="previews-h">
      <h2 id="previews-h">Previews</h2>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {items.length === 0 && (
        <p class="muted">
          {running
            ? "Start a dev server in a session (npm run dev, python3 -m http.server…); it shows up here."
            : "Previews appear here while the workspace runs."}
        </p>
      )}
      <ul class="rows">
        {items.map((p) => (
          <li key={p.id}>
            <div class="row-main">
              <span>
                <strong>:{p.port}</strong> {p.framework ?? p.process ?? ""}
              </span>
              <span class="muted">
                {p.source === "detected" ? "found listening" : "added by you"}
                {p.share === "link" ? " · shared by link" : ""}
              </span>
            </div>
            <div class="row-actions">
              <button
                type="button"
                onClick={() => openPreview(p)}
                aria-label={`open preview on port ${p.port}`}
              >
                Open ↗
              </button>
              {p.share === "link" ? (
                <button type="button" onClick={() => revoke(p)} aria-label={`Revoke link of port ${p.port}`}>
                  Revoke link
                </button>
              ) : (
                <button type="button" onClick={() => share(p)} aria-label={`Share link for port ${p.port}`}>
                  Share link
                </button>
              )}
            </div>
            {links[p.id] && (
              <div class="share">
                <input
                  class="share-link"
                  readOnly
                  value={links[p.id]}
                  aria-label={`shared link of port ${p.port}`}
                  onFocus={(e) => (e.target as HTMLInputElement).select()}
                />
                <CopyButton text={links[p.id]!} name={`Copy shared link of port ${p.port}`} />
              </div>
            )}
          </li>
        ))}
      </ul>
      <form class="inline-form" onSubmit={declare} noValidate>
        <Field
          id="preview-port"
          label="Preview a port"
          hint="For a dev server Berth did not find by itself."
          problem={portError}
        >
          <div class="input-row">
            <input
              id="preview-port"
              inputMode="numeric"
              placeholder="5173"
              value={port}
              {...fieldAria("preview-port", portError, "For a dev server Berth did not find by itself.")}
              onInput={(e) => {
                setPort((e.target as HTMLInputElement).value.trim());
                setPortError(null);
              }}
            />
            <button type="submit">Add preview</button>
          </div>
        </Field>
      </form>
    </section>
  );
}
