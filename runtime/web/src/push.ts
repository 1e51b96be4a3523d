/**
 * The web client's half of Web Push: the service worker (/sw.js, which shows pushes), subscribing this
 * device, and presence: while a Berth tab is visible and focused the control plane sends no push (the
 * user is looking already), so the tab says so, renewed every 20 s (the server forgets it after 45 s).
 */
import { api } from "./api.ts";

export function pushSupported(): boolean {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

let registration: Promise<ServiceWorkerRegistration | null> | null = null;

export function registerServiceWorker(): Promise<ServiceWorkerRegistration | null> {
  if (!registration && "serviceWorker" in navigator) {
    // A notification clicked while this window is not the worker's to navigate (sw.js): go where it says.
    navigator.serviceWorker.addEventListener("message", (e: MessageEvent) => {
      const data = e.data as { type?: string; url?: string } | null;
      if (data?.type !== "open" || typeof data.url !== "string") return;
      const to = new URL(data.url, location.origin);
      if (to.origin === location.origin) location.assign(to.href);
    });
    navigator.serviceWorker.startMessages();
  }
  registration ??=
    "serviceWorker" in navigator
      ? navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => null)
      : Promise.resolve(null);
  return registration;
}

/** Whether this device already sends pushes to this user's subscriptions. */
export async function pushEnabled(): Promise<boolean> {
  const reg = await registerServiceWorker();
  return Boolean(await reg?.pushManager.getSubscription().catch(() => null));
}

/** Asks for permission, subscribes with the control plane's VAPID key, and registers the device. */
export async function enablePush(): Promise<void> {
  const reg = await registerServiceWorker();
  if (!reg) throw new Error("this browser has no service workers");
  if ((await Notification.requestPermission()) !== "granted") throw new Error("notifications are blocked");
  const { publicKey } = await api<{ publicKey: string }>("/api/v1/push/key");
  const subscription = await reg.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: base64urlToBytes(publicKey),
  });
  await api("/api/v1/push/subscriptions", {
    method: "POST",
    body: { ...subscription.toJSON(), device: deviceName() },
  });
}

function deviceName(): string {
  const ua = navigator.userAgent;
  const os = /iPhone|iPad|Android|Mac OS X|Windows|Linux/.exec(ua)?.[0] ?? "device";
  const browser = /Firefox|Edg|Chrome|Safari/.exec(ua)?.[0] ?? "browser";
  return `${browser} on ${os}`;
}

function base64urlToBytes(value: string): Uint8Array<ArrayBuffer> {
  const b64 = value.replaceAll("-", "+").replaceAll("_", "/");
  const raw = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const bytes = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

/** Reports this tab's presence until the returned function is called. */
export function startPresence(): () => void {
  let reported: boolean | null = null;
  const report = (force = false) => {
    const focused = document.visibilityState === "visible" && document.hasFocus();
    if (!force && focused === reported) return;
    reported = focused;
    void api("/api/v1/presence", { method: "POST", body: { focused } }).catch(() => {
      reported = null;
    });
  };
  const onChange = () => report();
  const renew = setInterval(() => reported && report(true), 20_000);
  document.addEventListener("visibilitychange", onChange);
  addEventListener("focus", onChange);
  addEventListener("blur", onChange);
  report();
  return () => {
    clearInterval(renew);
    document.removeEventListener("visibilitychange", onChange);
    removeEventListener("focus", onChange);
    removeEventListener("blur", onChange);
  };
}
