import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, api } from "./api.ts";
import { type AuthState, maybeSignedIn, onSessionChange, signOut, startAuth } from "./auth/auth.ts";
import { SignedOut } from "./auth/SignedOut.tsx";
import { useRoute } from "./router.ts";
import { TerminalView } from "./terminal/TerminalView.tsx";
import { NotificationBell } from "./views/Notifications.tsx";
import { WorkspaceDetail } from "./views/WorkspaceDetail.tsx";
import { Workspaces } from "./views/Workspaces.tsx";

function App() {
  const route = useRoute();
  const [auth, setAuth] = useState<AuthState | null>(null);
  const [me, setMe] = useState<"loading" | "signed-in" | "signed-out">("loading");
  useEffect(() => {
    startAuth()
      .then(setAuth)
      .catch((e) => setAuth({ mode: "hosted-failed", reason: String(e instanceof Error ? e.message : e) }));
  }, []);
  useEffect(() => {
    if (!auth) return;
    const check = () => {
      if (!maybeSignedIn()) return setMe("signed-out");
      api("/api/v1/me")
        .then(() => setMe("signed-in"))
        .catch((e) => setMe(e instanceof ApiError && e.status === 401 ? "signed-out" : "signed-in"));
    };
    check();
    return onSessionChange(check);
  }, [auth]);

  if (!auth || me === "loading") return <p class="page">Loading…</p>;
  if (me === "signed-out") return <SignedOut auth={auth} />;
  if (route.name === "terminal") return <TerminalView sessionId={route.sessionId} />;
  return (
    <>
      <header class="topbar">
        <a class="brand" href="#/">
          Berth
        </a>
        <div class="topbar-actions">
          <NotificationBell />
          <button
            type="button"
            onClick={() => signOut().finally(() => setMe("signed-out"))}
            aria-label="Sign out"
          >
            Sign out
          </button>
        </div>
      </header>
      {route.name === "workspace" ? <WorkspaceDetail id={route.id} /> : <Workspaces />}
    </>
  );
}

render(<App />, document.getElementById("app")!);
