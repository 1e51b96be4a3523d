import { useEffect, useState } from "preact/hooks";

/** Hash routes, so the control plane serves one index.html and deep links survive reloads. */
export type Route =
  | { name: "workspaces" }
  | { name: "workspace"; id: string }
  | { name: "onboard"; id: string }
  | { name: "terminal"; sessionId: string }
  | { name: "usage" }
  | { name: "tokens" };

export function parseRoute(hash: string): Route {
  const w = /^#\/w\/([0-9a-f-]{36})$/.exec(hash);
  if (w) return { name: "workspace", id: w[1]! };
  const o = /^#\/w\/([0-9a-f-]{36})\/onboard$/.exec(hash);
  if (o) return { name: "onboard", id: o[1]! };
  const t = /^#\/t\/([0-9a-f-]{36})$/.exec(hash);
  if (t) return { name: "terminal", sessionId: t[1]! };
  if (hash === "#/usage") return { name: "usage" };
  if (hash === "#/tokens") return { name: "tokens" };
  return { name: "workspaces" };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

export const href = {
  workspaces: () => "#/",
  workspace: (id: string) => `#/w/${id}`,
  onboard: (id: string) => `#/w/${id}/onboard`,
  terminal: (sessionId: string) => `#/t/${sessionId}`,
  usage: () => "#/usage",
  tokens: () => "#/tokens",
};
