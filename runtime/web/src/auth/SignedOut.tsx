import { useEffect, useRef } from "preact/hooks";
import type { AuthState } from "./auth.ts";
import type { BrowserClerk } from "./clerk.ts";

/** Clerk's sign-in component, mounted into a div the way clerk-js wants it. */
function ClerkSignIn({ clerk }: { clerk: BrowserClerk }) {
  const node = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const div = node.current!;
    clerk.mountSignIn(div);
    return () => clerk.unmountSignIn(div);
  }, [clerk]);
  return <div ref={node} class="clerk-sign-in" />;
}

/** What a signed-out visitor sees, per mode. */
export function SignedOut({ auth }: { auth: AuthState }) {
  return (
    <main class="page">
      <h1>Berth</h1>
      {auth.mode === "local" && (
        <p>
          You are signed out. Open the sign-in link that <code>npm start</code> printed.
        </p>
      )}
      {auth.mode === "hosted" && <ClerkSignIn clerk={auth.clerk} />}
      {auth.mode === "hosted-unconfigured" && (
        <p role="alert">
          Web sign-in is not configured on this server: set <code>CLERK_PUBLISHABLE_KEY</code>. API clients
          can still send a Clerk session token as <code>Authorization: Bearer</code>.
        </p>
      )}
      {auth.mode === "hosted-failed" && (
        <p role="alert">Sign-in could not load ({auth.reason}). Check your connection and reload the page.</p>
      )}
    </main>
  );
}
