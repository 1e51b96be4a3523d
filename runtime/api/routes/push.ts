import { isIP } from "node:net";
import { z } from "zod";
import type { PushSubscriptionRow } from "../../store/rows.ts";
import type { ApiRouter, AppDeps } from "../context.ts";
import { parseInput } from "../errors.ts";

const base64url = (bytes: number, what: string) =>
  z
    .string()
    .regex(/^[A-Za-z0-9_-]+={0,2}$/, `must be base64url (${what})`)
    .refine((v) => Buffer.from(v, "base64url").length === bytes, `must decode to ${bytes} bytes (${what})`);

/**
 * What `PushSubscription.toJSON()` gives, plus an optional device label. The endpoint is the push service's
 * URL the control plane will POST to: https only, and never an IP literal (a push service has a name), so a
 * subscription cannot aim the control plane at an internal address by number.
 */
const subscribeBody = (allowIpEndpoints: boolean) =>
  z.object({
    endpoint: z
      .url({ protocol: /^https$/, error: "must be an https URL" })
      .max(2048)
      .refine((u) => allowIpEndpoints || isIP(new URL(u).hostname.replace(/^\[|\]$/g, "")) === 0, {
        message: "must name the push service's host, not an IP address",
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

const present = (s: PushSubscriptionRow) => ({
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

  router.get("/api/v1/push/key", (ctx) => {
    ctx.body = { publicKey: deps.vapidPublicKey };
  });

  router.get("/api/v1/push/subscriptions", async (ctx) => {
    ctx.body = { subscriptions: (await ctx.state.scope.push.listOwn()).map(present) };
  });

  router.post("/api/v1/push/subscriptions", async (ctx) => {
    const input = parseInput(body, ctx.request.body ?? {});
    const row = await ctx.state.scope.push.subscribe({
      endpoint: input.endpoint,
      p256dh: input.keys.p256dh,
      auth: input.keys.auth,
      device: input.device || null,
    });
    ctx.status = 201;
    ctx.body = { subscription: present(row) };
  });

  router.delete("/api/v1/push/subscriptions/:id", async (ctx) => {
    await ctx.state.scope.push.unsubscribe(ctx.params.id!);
    ctx.status = 204;
  });

  /** The web client: a Berth tab is visible and focused (renewed every ~20 s), or no longer. */
  router.post("/api/v1/presence", async (ctx) => {
    const { focused } = parseInput(presenceBody, ctx.request.body ?? {});
    await ctx.state.scope.push.setPresence(focused ? new Date(Date.now() + PRESENCE_TTL_MS) : null);
    ctx.status = 204;
  });
}
