import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, api } from "./api.ts";
import { useRoute } from "./router.ts";
import { TerminalView } from "./terminal/TerminalView.tsx";
import { NotificationBell } from "./views/Notifications.tsx";
import { WorkspaceDetail } from "./views/WorkspaceDetail.tsx";
import { Workspaces } from "./views/Workspaces.tsx";

function App() {
  const route = useRoute();
  const [me, setMe] = useState<"loading" | "signed-in" | "signed-out">("loading");
  useEffect(() => {
    api("/api/v1/me")
      .then(() => setMe("signed-in"))
      .catch((e) => setMe(e instanceof ApiError && e.status === 401 ? "signed-out" : "signed-in"));
  }, []);

  if (me === "loading") return <p class="page">Loading…</p>;
  if (me === "signed-out") {
    return (
      <main class="page">
        <h1>Berth</h1>
        <p>
          You are signed out. Open the sign-in link that <code>npm start</code> printed.
        </p>
      </main>
    );
  }
  if (route.name === "terminal") return <TerminalView sessionId={route.sessionId} />;
  return (
    <>
      <header class="topbar">
        <a class="brand" href="#/">
          Berth
        </a>
        <NotificationBell />
      </header>
      {route.name === "workspace" ? <WorkspaceDetail id={route.id} /> : <Workspaces />}
    </>
  );
}

render(<App />, document.getElementById("app")!);
