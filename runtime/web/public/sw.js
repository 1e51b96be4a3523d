/*
 * Berth's service worker: it exists for Web Push (and makes the web client installable). It caches
 * nothing: Berth is useless offline, and a stale index.html would pin old assets.
 *
 * A push carries JSON from the control plane (runtime/domain/push/push-sender.ts `PushMessage`): title,
 * body, kind, tag (one per session, so a newer push replaces the older one) and url (the session's
 * terminal). Every push shows a notification (Safari revokes the permission of sites that stay silent).
 */
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch {
    message = { title: event.data ? event.data.text() : "" };
  }
  event.waitUntil(
    self.registration.showNotification(message.title || "Berth", {
      body: message.body || "",
      tag: message.tag || "berth",
      renotify: Boolean(message.tag),
      icon: "/icon-192.png",
      data: { url: message.url || "/", kind: message.kind || "" },
    }),
  );
});

/** A click opens the session's terminal: in a Berth window already open if there is one, else a new one. */
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  // Only ever a page of Berth's own origin.
  const target = new URL(event.notification.data?.url || "/", self.location.origin);
  const url = target.origin === self.location.origin ? target.href : `${self.location.origin}/`;
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const client of windows) {
        if (new URL(client.url).origin !== self.location.origin) continue;
        await client.focus();
        // navigate() works only on a window this worker controls (not one loaded with a hard reload, or
        // before the worker claimed it); such a window moves itself on the message (push.ts).
        if ("navigate" in client) {
          try {
            return await client.navigate(url);
          } catch {}
        }
        client.postMessage({ type: "open", url });
        return undefined;
      }
      return self.clients.openWindow(url);
    })(),
  );
});
