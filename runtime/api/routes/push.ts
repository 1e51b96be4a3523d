import { isIP } from "node:net";
import { z } from "zod";
import { MAX_PUSH_SUBSCRIPTIONS } from "../../store/push.ts";
import type { PushSubscriptionRow } from "../../store/rows.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";
import { doc, timestamp } from "../openapi/doc.ts";

const base64url = (bytes: number, what: string) =>
  z
    .string()
    .regex(/^[A-Za-z0-9_-]+={0,2}$/, `must be base64url (${what})`)
    .refine((v) => Buffer.from(v, "base64url").length === bytes, `must decode to ${bytes} bytes (${what})`);

/**
 * Names that reach the control plane itself or its private network rather than a push service: localhost
 * and its subdomains (RFC 6761), a single label (resolved through the search domains, as GCE's `metadata`
 * is), and the local-only suffixes (`.internal`, where cloud metadata services live; mDNS `.local`).
 * An IP literal is judged separately.
 */
function isPublicHostName(hostname: string): boolean {
  if (isIP(hostname.replace(/^\[|\]$/g, "")) !== 0) return true;
  const name = hostname.toLowerCase().replace(/\.$/, "");
  if (!name.includes(".")) return false;
  return !/(^|\.)(localhost|internal|local|home\.arpa|localdomain)$/.test(name);
}

/**
 * What `PushSubscription.toJSON()` gives, plus an optional device label. The endpoint is the push service's
 * URL the control plane will POST to: https only, and never an IP literal (a push service has a name) nor a
 * local name (`isPublicHostName`), so a subscription cannot aim the control plane at an internal address.
 */
const subscribeBody = (allowIpEndpoints: boolean) =>
  z.object({
    endpoint: z
      .url({ protocol: /^https$/, error: "must be an https URL" })
      .max(2048)
      .refine((u) => allowIpEndpoints || isIP(new URL(u).hostname.replace(/^\[|\]$/g, "")) === 0, {
        message: "must name the push service's host, not an IP address",
      })
      .refine((u) => isPublicHostName(new URL(u).hostname), {
        message: "must name the push service's public host, not a local or internal one",
      }),
    keys: z.object({
      p256dh: base64url(65, "an uncompressed P-256 public key"),
      auth: base64url(16, "the 16-byte auth secret"),
    }),
    device: z.string().trim().max(100).optional(),
    expirationTime: z.number().nullable().optional(),
  });

const presenceBody = z.object({ focused: z.boolean() }).strict();

/** How long one "visible and focused" report holds; the web client renews it while it stays so. */
export const PRESENCE_TTL_MS = 45_000;

export const PushSubscription = z.object({
  id: z.string(),
  device: z.string().nullable().describe("the label the device gave itself, if any"),
  service: z.string().describe("the push service's origin only: the full endpoint is a capability"),
  createdAt: timestamp,
  lastSentAt: timestamp.nullable().describe("when a push last went to this device"),
});

const present = (s: PushSubscriptionRow): z.input<typeof PushSubscription> => ({
  id: s.id,
  device: s.device,
  /** Only the push service's origin: the full endpoint is a capability. */
  service: new URL(s.endpoint).origin,
  createdAt: s.createdAt,
  lastSentAt: s.lastSentAt,
});

/** Web Push: the VAPID public key, the user's subscriptions (per device), and tab presence. */
export function pushRoutes(router: ApiRouter, deps: AppDeps & { allowIpPushEndpoints?: boolean }): void {
  const body = subscribeBody(deps.allowIpPushEndpoints ?? false);

  const keyDoc = doc({
    summary: "The VAPID public key a browser subscribes with (applicationServerKey)",
    responses: {
      200: z.object({ publicKey: z.string().describe("base64url, an uncompressed P-256 public key") }),
    },
  });
  router.get("/api/v1/push/key", keyDoc, (ctx) => {
    ctx.body = { publicKey: deps.vapidPublicKey };
  });

  const listDoc = doc({
    summary: "Your push subscriptions (one per browser and device)",
    responses: { 200: z.object({ subscriptions: z.array(PushSubscription) }) },
  });
  router.get("/api/v1/push/subscriptions", listDoc, async (ctx) => {
    ctx.body = { subscriptions: (await ctx.state.scope.push.listOwn()).map(present) };
  });

  const subscribeDoc = doc({
    summary: "Subscribe this browser to pushes (a known endpoint is updated and moves to you)",
    description: `At most ${MAX_PUSH_SUBSCRIPTIONS} subscriptions a user: one more is a 409.`,
    body,
    responses: { 201: z.object({ subscription: PushSubscription }) },
    errors: [409],
  });
  router.post("/api/v1/push/subscriptions", subscribeDoc, async (ctx) => {
    const input = parseInput(body, ctx.request.body ?? {});
    const row = await ctx.state.scope.transaction((tx) =>
      tx.push.subscribe({
        endpoint: input.endpoint,
        p256dh: input.keys.p256dh,
        auth: input.keys.auth,
        device: input.device || null,
      }),
    );
    ctx.status = 201;
    ctx.body = { subscription: present(row) };
  });

  const unsubscribeDoc = doc({
    summary: "Delete one of your push subscriptions",
    responses: { 204: null },
    errors: [404],
  });
  router.delete("/api/v1/push/subscriptions/:id", unsubscribeDoc, async (ctx) => {
    await ctx.state.scope.push.unsubscribe(ctx.params.id!);
    ctx.status = 204;
  });

  /** The web client: a Berth tab is visible and focused (renewed every ~20 s), or no longer. */
  const presenceDoc = doc({
    summary: "Report a Berth tab visible and focused (no pushes meanwhile), or no longer",
    description: `A focused report holds for ${PRESENCE_TTL_MS / 1000} s; the web client renews it while it stays so.`,
    tag: "push",
    body: presenceBody,
    responses: { 204: null },
  });
  router.post("/api/v1/presence", presenceDoc, async (ctx) => {
    const { focused } = parseInput(presenceBody, ctx.request.body ?? {});
    await ctx.state.scope.push.setPresence(focused ? new Date(Date.now() + PRESENCE_TTL_MS) : null);
    ctx.status = 204;
  });
}
