import { useEffect, useState } from "preact/hooks";
import { api } from "../api.ts";

interface Preview {
  id: string;
  port: number;
  source: "detected" | "declared";
  process: string | null;
  framework: string | null;
  share: "owner" | "link";
  pathUrl: string;
}

/**
 * Dev servers on the box: detected by the agent or declared here. Open goes to the preview's own origin
 * (through a one-time code) when a preview domain is configured, else to the path form; a share link can be
 * made and revoked.
 */
export function Previews({ workspaceId }: { workspaceId: string }) {
  const [items, setItems] = useState<Preview[]>([]);
  const [port, setPort] = useState("");
  const [links, setLinks] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);

  const load = () =>
    api<{ previews: Preview[] }>(`/api/v1/workspaces/${workspaceId}/previews`)
      .then((r) => setItems(r.previews))
      .catch((e: Error) => setError(e.message));
  useEffect(() => {
    load();
    const t = setInterval(load, 3_000);
    return () => clearInterval(t);
  }, [workspaceId]);

  const declare = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      await api(`/api/v1/workspaces/${workspaceId}/previews`, {
        method: "POST",
        body: { port: Number(port) },
      });
      setPort("");
      await load();
    } catch (err) {
      setError((err as Error).message);
    }
  };

  const open = async (p: Preview) => {
    // Opened synchronously so that popup blockers see the click; the URL follows.
    const tab = window.open("about:blank", "_blank");
    try {
      const { url } = await api<{ url: string }>(`/api/v1/previews/${p.id}/open`, {
        method: "POST",
        body: {},
      });
      if (tab) tab.location.href = url;
    } catch {
      if (tab) tab.location.href = p.pathUrl;
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
      setError((err as Error).message);
    }
  };

  const revoke = async (p: Preview) => {
    await api(`/api/v1/previews/${p.id}/share`, { method: "DELETE" }).catch((e: Error) =>
      setError(e.message),
    );
    const { [p.id]: _gone, ...rest } = links;
    setLinks(rest);
    await load();
  };

  return (
    <section aria-labelledby="previews-h">
      <h2 id="previews-h">Previews</h2>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {items.length === 0 && <p class="muted">Start a dev server in a session; it shows up here.</p>}
      <ul class="sessions">
        {items.map((p) => (
          <li key={p.id}>
            <span>
              <strong>:{p.port}</strong> {p.framework ?? p.process ?? ""}{" "}
              <span class="muted">{p.source}</span>
            </span>
            <span class="row">
              <button type="button" onClick={() => open(p)} aria-label={`open preview on port ${p.port}`}>
                Open
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
            </span>
            {links[p.id] && (
              <input
                class="share-link"
                readOnly
                value={links[p.id]}
                aria-label={`shared link of port ${p.port}`}
                onFocus={(e) => (e.target as HTMLInputElement).select()}
              />
            )}
          </li>
        ))}
      </ul>
      <form class="inline" onSubmit={declare}>
        <label for="preview-port">Preview a port</label>
        <input
          id="preview-port"
          inputMode="numeric"
          pattern="[0-9]{2,5}"
          placeholder="5173"
          value={port}
          onInput={(e) => setPort((e.target as HTMLInputElement).value)}
          required
        />
        <button type="submit">Add preview</button>
      </form>
    </section>
  );
}
