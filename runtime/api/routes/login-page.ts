import type { ApiRouter } from "../context.ts";

// The token travels in the URL fragment, which browsers never send to servers or put in access logs.
const LOGIN_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Berth — sign in</title><link rel="icon" href="data:,"></head>
<body><main><h1>Berth</h1><p id="status" role="status">Signing in…</p></main>
<script src="/login.js"></script></body></html>`;

const LOGIN_JS = `(async () => {
  const status = document.getElementById("status");
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  history.replaceState(null, "", location.pathname);
  if (!token) { status.textContent = "Open the login link printed by 'npm start'."; return; }
  const res = await fetch("/api/v1/auth/login", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }),
  });
  if (res.ok) { location.replace("/"); return; }
  const body = await res.json().catch(() => ({}));
  status.textContent = "Sign-in failed: " + (body.error?.message ?? res.status);
})();`;

/** The landing page of the printed login link (local mode). */
export function loginPageRoutes(router: ApiRouter): void {
  router.get("/login", (ctx) => {
    ctx.type = "html";
    ctx.set("Cache-Control", "no-store");
    ctx.body = LOGIN_HTML;
  });
  router.get("/login.js", (ctx) => {
    ctx.type = "application/javascript";
    ctx.body = LOGIN_JS;
  });
}
