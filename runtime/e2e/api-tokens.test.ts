/**
 * Personal API tokens over HTTP against a real control plane (local mode; hosted mode is covered by
 * berth-client-hosted.test.ts): created with a web sign-in and shown once, accepted as a Bearer, listed
 * without their secret, unable to mint more, refused with a clear reason once revoked or expired, audited.
 */
import { describe, expect, it } from "vitest";
import { json, startTestControlPlane } from "../test/control-plane.ts";

describe("personal API tokens", async () => {
  const cp = await startTestControlPlane();
  const { pool } = cp.deps.database;
  const create = (body: unknown, token = cp.localToken) =>
    cp.api("/api/v1/tokens", { method: "POST", token, json: body });

  let secret = "";
  let id = "";

  it("creates a token with a web sign-in and shows its secret once", async () => {
    const res = await create({ name: "laptop" });
    expect(res.status).toBe(201);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = await json(res);
    secret = body.secret;
    id = body.token.id;
    expect(secret).toMatch(/^berth_pat_[A-Za-z0-9_-]{43}$/);
    expect(body.token).toMatchObject({ name: "laptop", prefix: secret.slice(0, 16), revokedAt: null });
    // 90 days by default.
    const days = (Date.parse(body.token.expiresAt) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(89.9);
    expect(days).toBeLessThanOrEqual(90);
    // Stored as a hash: the secret is nowhere in the row.
    const { rows } = await pool.query("SELECT * FROM api_tokens WHERE id = $1", [id]);
    expect(JSON.stringify(rows)).not.toContain(secret.slice(10));
  });

  it("refuses bad input with a 4xx naming the field", async () => {
    for (const body of [
      {},
      { name: "" },
      { name: "x", expiresInDays: 0 },
      { name: "x", expiresInDays: 366 },
    ]) {
      const res = await create(body);
      expect(res.status).toBe(400);
      expect((await json(res)).error.field).toMatch(/^(name|expiresInDays)$/);
    }
  });

  it("authenticates as its user, recording when it was used", async () => {
    const me = await cp.api("/api/v1/me", { token: secret });
    expect(me.status).toBe(200);
    const { rows } = await pool.query("SELECT last_used_at FROM api_tokens WHERE id = $1", [id]);
    expect(rows[0].last_used_at).not.toBeNull();
    // Within the minute, a use writes nothing.
    expect((await cp.api("/api/v1/workspaces", { token: secret })).status).toBe(200);
    const again = await pool.query("SELECT last_used_at FROM api_tokens WHERE id = $1", [id]);
    expect(again.rows[0].last_used_at).toEqual(rows[0].last_used_at);
  });

  it("lists tokens without their secrets, and a token cannot create another", async () => {
    const list = await cp.api("/api/v1/tokens", { token: secret });
    expect(list.status).toBe(200);
    const text = await list.text();
    expect(text).not.toContain(secret);
    expect(JSON.parse(text).tokens).toEqual([expect.objectContaining({ id, name: "laptop" })]);
    const minted = await create({ name: "from a token" }, secret);
    expect(minted.status).toBe(403);
    expect((await json(minted)).error.code).toBe("token_needs_web_session");
  });

  it("stops working once revoked, with a message saying so", async () => {
    const revoked = await cp.api(`/api/v1/tokens/${id}`, { method: "DELETE", token: cp.localToken });
    expect(revoked.status).toBe(200);
    expect((await json(revoked)).token.revokedAt).not.toBeNull();
    const res = await cp.api("/api/v1/me", { token: secret });
    expect(res.status).toBe(401);
    const { error } = await json(res);
    expect(error.code).toBe("token_revoked");
    expect(error.message).toContain("/#/tokens");
    const actions = await pool.query(
      "SELECT action FROM audit_log WHERE target_type = 'api_token' AND target_id = $1 ORDER BY id",
      [id],
    );
    expect(actions.rows.map((r) => r.action)).toEqual(["api_token.create", "api_token.revoke"]);
    expect(
      (await cp.api("/api/v1/tokens/not-a-uuid", { method: "DELETE", token: cp.localToken })).status,
    ).toBe(404);
  });

  it("refuses an expired token and an unknown one", async () => {
    const body = await json(await create({ name: "short", expiresInDays: 1 }));
    await pool.query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1", [
      body.token.id,
    ]);
    const expired = await cp.api("/api/v1/me", { token: body.secret });
    expect(expired.status).toBe(401);
    expect((await json(expired)).error.code).toBe("token_expired");
    const unknown = await cp.api("/api/v1/me", { token: `berth_pat_${"A".repeat(43)}` });
    expect(unknown.status).toBe(401);
    expect((await json(unknown)).error.code).toBe("token_invalid");
  });
});
