import { z } from "zod";
import { MAX_USER_SECRET_BYTES, userSecretName } from "../../../box/protocol.ts";
import { deleteUserSecret, listUserSecrets, putUserSecret } from "../../domain/user-secrets/service.ts";
import type { ApiRouter } from "../context.ts";
import { parseInput } from "../errors.ts";
import { doc, timestamp } from "../openapi/doc.ts";

const nameParams = z.object({ name: userSecretName });
const putBody = z
  .object({
    value: z
      .string()
      .refine((v) => !v.includes("\0"), "must not contain NUL characters")
      .refine(
        (v) => Buffer.byteLength(v, "utf8") <= MAX_USER_SECRET_BYTES,
        `must be at most ${MAX_USER_SECRET_BYTES} bytes`,
      ),
  })
  .strict();

/** A secret as the API shows it: its name and times, never its value. */
export const UserSecret = z.object({ name: z.string(), createdAt: timestamp, updatedAt: timestamp });

/**
 * A workspace's own secrets (environment for its sessions): write-only. The answers name secrets and
 * times, never a value; the values reach only the workspace's agent.
 */
export function userSecretRoutes(router: ApiRouter): void {
  const listDoc = doc({
    summary: "A workspace's secrets, by name (values are write-only)",
    responses: { 200: z.object({ secrets: z.array(UserSecret) }) },
    errors: [404],
  });
  router.get("/api/v1/workspaces/:id/secrets", listDoc, async (ctx) => {
    const secrets = await listUserSecrets(ctx.state.scope, ctx.params.id!);
    ctx.body = {
      secrets: secrets.map((s) => ({ name: s.name, createdAt: s.createdAt, updatedAt: s.updatedAt })),
    };
  });

  const written = z.object({ secret: z.object({ name: z.string() }) });
  const putDoc = doc({
    summary: "Store a secret for the workspace's new sessions (201 new, 200 replaced)",
    params: { name: userSecretName },
    body: putBody,
    responses: { 200: written, 201: written },
    errors: [404, 409],
  });
  router.put("/api/v1/workspaces/:id/secrets/:name", putDoc, async (ctx) => {
    const { name } = parseInput(nameParams, { name: ctx.params.name }, "path");
    const { value } = parseInput(putBody, ctx.request.body ?? {});
    const { created } = await putUserSecret(ctx.state.scope, ctx.params.id!, name, value, ctx.ip);
    ctx.status = created ? 201 : 200;
    ctx.body = { secret: { name } };
  });

  const deleteDoc = doc({
    summary: "Delete a secret",
    params: { name: userSecretName },
    responses: { 204: null },
    errors: [404],
  });
  router.delete("/api/v1/workspaces/:id/secrets/:name", deleteDoc, async (ctx) => {
    const { name } = parseInput(nameParams, { name: ctx.params.name }, "path");
    await deleteUserSecret(ctx.state.scope, ctx.params.id!, name, ctx.ip);
    ctx.status = 204;
  });
}
