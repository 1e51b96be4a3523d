import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, api } from "./api.ts";
import { type AuthState, maybeSignedIn, onSessionChange, signOut, startAuth } from "./auth/auth.ts";
import { SignedOut } from "./auth/SignedOut.tsx";
import { href, useRoute } from "./router.ts";
import { TerminalView } from "./terminal/TerminalView.tsx";
import { ApiTokensPage } from "./views/ApiTokens.tsx";
import { NotificationBell } from "./views/Notifications.tsx";
import { Onboarding } from "./views/Onboarding.tsx";
import { UsagePage } from "./views/Usage.tsx";
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

  if (!auth || me === "loading") return <p class="page muted">Loading…</p>;
  if (me === "signed-out") return <SignedOut auth={auth} />;
  if (route.name === "terminal") return <TerminalView sessionId={route.sessionId} />;
  return (
    <>
      <header class="topbar">
        <a class="brand" href="#/" aria-label="Berth">
          <BrandMark />
          <span class="brand-name">Berth</span>
        </a>
        <div class="topbar-actions">
          <a class="topbar-link" href={href.usage()}>
            Usage
          </a>
          <a class="topbar-link" href={href.tokens()}>
            Tokens
          </a>
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
      {route.name === "workspace" ? (
        <WorkspaceDetail id={route.id} />
      ) : route.name === "onboard" ? (
        <Onboarding id={route.id} />
      ) : route.name === "usage" ? (
        <UsagePage />
      ) : route.name === "tokens" ? (
        <ApiTokensPage />
      ) : (
        <Workspaces />
      )}
    </>
  );
}

/** The logo: a hull at its berth under a flag, the favicon's drawing (src/favicon.svg). */
function BrandMark() {
  return (
    <svg class="brand-mark" viewBox="0 0 32 32" aria-hidden="true">
      <rect width="32" height="32" rx="7" fill="#2563eb" />
      <path d="M6 19.5h20l-3.2 5.2a2 2 0 0 1-1.7 1H10.9a2 2 0 0 1-1.7-1z" fill="#fff" />
      <path
        d="M15 6.5v11.2M15 8l7 8.2h-7"
        fill="none"
        stroke="#fff"
        stroke-width="2.2"
        stroke-linejoin="round"
        stroke-linecap="round"
      />
    </svg>
  );
}

render(<App />, document.getElementById("app")!);
