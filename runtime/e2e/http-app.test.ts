import { chmodSync, mkdtempSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startEmbeddedPostgres } from "../store/embedded.ts";
import { json, startTestControlPlane } from "../test/control-plane.ts";
import { waitFor } from "../test/wait.ts";

describe("HTTP conventions", async () => {
  const cp = await startTestControlPlane({}, { loginRateLimit: { points: 3, durationSeconds: 60 } });

  it("answers /healthz and /readyz", async () => {
    expect((await cp.api("/healthz")).status).toBe(200);
    expect((await cp.api("/readyz")).status).toBe(200);
  });

  it("echoes a caller's request id and makes one otherwise", async () => {
    const echoed = await cp.api("/healthz", { headers: { "x-request-id": "req-abc.123" } });
    expect(echoed.headers.get("x-request-id")).toBe("req-abc.123");
    const made = await cp.api("/healthz", { headers: { "x-request-id": "bad id with spaces" } });
    expect(made.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("sends security headers", async () => {
    const res = await cp.api("/healthz");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("content-security-policy")).toContain("default-src 'self'");
  });

  it("answers unknown routes with the JSON error shape", async () => {
    const res = await cp.api("/nope");
    expect(res.status).toBe(404);
    const body = await json(res);
    expect(body).toEqual({
      error: { code: "not_found", message: "no such route", requestId: expect.any(String) },
    });
  });

  it("answers a malformed JSON body with 400, never 500", async () => {
    const res = await cp.api("/api/v1/auth/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{bad",
    });
    expect(res.status).toBe(400);
    expect((await json(res)).error.code).toBe("invalid_json");
  });

  it("names the offending field", async () => {
    const res = await cp.api("/api/v1/auth/login", { method: "POST", json: { token: 5 } });
    expect(res.status).toBe(400);
    const body = await json(res);
    expect(body.error.code).toBe("invalid_input");
    expect(body.error.field).toBe("token");
    expect(body.error.message).toMatch(/^body\.token:/);
  });

  it("limits body size", async () => {
    const res = await cp.api("/api/v1/auth/login", { method: "POST", json: { token: "x".repeat(400_000) } });
    expect(res.status).toBe(413);
    expect((await json(res)).error.code).toBe("body_too_large");
  });

  it("exposes Prometheus metrics, labelled by route pattern", async () => {
    const text = await (await cp.api("/metrics")).text();
    expect(text).toContain("process_cpu_seconds_total");
    expect(text).toMatch(
      /http_request_duration_seconds_count\{method="GET",route="\/healthz",status="200"\}/,
    );
  });

  it("refuses an upgrade to an unknown path with 404 instead of answering 200", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${cp.url}/api/v1/nope`, {
        headers: {
          connection: "Upgrade",
          upgrade: "websocket",
          "sec-websocket-version": "13",
          "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
      });
      req.on("response", (res) => resolve(res.statusCode ?? 0));
      req.on("upgrade", () => resolve(101));
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(404);
  });
});

describe("local login", async () => {
  const cp = await startTestControlPlane({}, { loginRateLimit: { points: 3, durationSeconds: 60 } });

  it("exchanges the printed token for a session cookie that authenticates", async () => {
    expect(cp.loginUrl).toContain(`/login#token=${cp.localToken}`);
    const res = await cp.api("/api/v1/auth/login", { method: "POST", json: { token: cp.localToken } });
    expect(res.status).toBe(200);
    const cookie = res.headers.get("set-cookie")!;
    expect(cookie).toMatch(/berth_session=.*httponly/i);
    expect(cookie).toMatch(/samesite=strict/i);
    const me = await cp.api("/api/v1/me", { headers: { cookie: cookie.split(";")[0]! } });
    expect(me.status).toBe(200);
    const audit = await cp.deps.database.pool.query(
      "SELECT action FROM audit_log WHERE action = 'auth.login'",
    );
    expect(audit.rowCount).toBe(1);
  });

  it("accepts the token as a Bearer API token, and nothing else", async () => {
    expect((await cp.api("/api/v1/me", { token: cp.localToken })).status).toBe(200);
    const wrong = await cp.api("/api/v1/me", { token: "x".repeat(43) });
    expect(wrong.status).toBe(401);
    const malformed = await cp.api("/api/v1/me", { headers: { authorization: "Basic abc" } });
    expect((await json(malformed)).error.code).toBe("bad_authorization_header");
    const forged = await cp.api("/api/v1/me", {
      headers: { cookie: "berth_session=eyJhbGciOiJub25lIn0.e30." },
    });
    expect((await json(forged)).error.code).toBe("session_invalid");
  });

  it("rate-limits failed login attempts per client, never the right token", async () => {
    const attempt = () => cp.api("/api/v1/auth/login", { method: "POST", json: { token: "wrong" } });
    // Only failures count: the successful login above used nothing of the budget of three.
    expect((await attempt()).status).toBe(401);
    expect((await attempt()).status).toBe(401);
    expect((await attempt()).status).toBe(401);
    const limited = await attempt();
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await json(limited)).error.code).toBe("rate_limited");
    // The owner is never locked out by someone else's wrong guesses.
    expect(
      (await cp.api("/api/v1/auth/login", { method: "POST", json: { token: cp.localToken } })).status,
    ).toBe(200);
  });
});

describe("local sign-out", async () => {
  const cp = await startTestControlPlane();
  const login = async () => {
    const res = await cp.api("/api/v1/auth/login", { method: "POST", json: { token: cp.localToken } });
    return { cookie: res.headers.get("set-cookie")!.split(";")[0]! };
  };

  it("ends every copy of the session server side, and a new sign-in works at once", async () => {
    const tab = await login();
    const copy = { ...tab }; // another tab, another device, or a stolen cookie
    // Sessions carry whole seconds, and signing out ends those issued before its second: let the clock leave
    // the second this one was issued in.
    const issuedAt = JSON.parse(Buffer.from(tab.cookie.split(".")[1]!, "base64url").toString()).iat;
    await waitFor("a second after the session's", () => Date.now() >= (issuedAt + 1) * 1000);
    const out = await cp.api("/api/v1/auth/logout", { method: "POST", headers: tab });
    expect(out.status).toBe(204);
    expect(out.headers.get("set-cookie")).toMatch(/berth_session=;/);
    const stale = await cp.api("/api/v1/me", { headers: copy });
    expect(stale.status).toBe(401);
    expect((await json(stale)).error.code).toBe("session_invalid");
    const again = await login();
    expect((await cp.api("/api/v1/me", { headers: again })).status).toBe(200);
    const audit = await cp.deps.database.pool.query("SELECT 1 FROM audit_log WHERE action = 'auth.logout'");
    expect(audit.rowCount).toBe(1);
  });

  it("ends a session issued in the same second as the sign-out too", async () => {
    const iatOf = (cookie: string) =>
      JSON.parse(Buffer.from(cookie.split(".")[1]!, "base64url").toString()).iat as number;
    // Sign in and out within one clock second (start early in a second; retry if it ran past it).
    let copy: { cookie: string } | undefined;
    for (let attempt = 0; attempt < 5 && !copy; attempt++) {
      await waitFor("the start of a second", () => Date.now() % 1000 < 300);
      const tab = await login();
      const out = await cp.api("/api/v1/auth/logout", { method: "POST", headers: tab });
      expect(out.status).toBe(204);
      if (Math.floor(Date.now() / 1000) === iatOf(tab.cookie)) copy = { ...tab };
    }
    expect(copy, "signed in and out within one second").toBeDefined();
    const stale = await cp.api("/api/v1/me", { headers: copy! });
    expect(stale.status).toBe(401);
    expect((await json(stale)).error.code).toBe("session_invalid");
    // And a sign-in right after still works.
    expect((await cp.api("/api/v1/me", { headers: await login() })).status).toBe(200);
  });

  it("lets the session cookie change nothing from another origin on the same site", async () => {
    const tab = await login();
    // A page on another port of the same host is same-site: SameSite=Strict still sends the cookie.
    const other = "http://127.0.0.1:1";
    for (const headers of [
      { ...tab, origin: other, "sec-fetch-site": "same-site" },
      { ...tab, origin: other },
    ]) {
      const res = await cp.api("/api/v1/auth/logout", { method: "POST", headers });
      expect(res.status).toBe(401);
      expect((await json(res)).error.code).toBe("session_cookie_cross_origin");
    }
    // Nothing was applied: the session still works, and no sign-out was recorded for it.
    expect((await cp.api("/api/v1/me", { headers: tab })).status).toBe(200);
    // Reads are fine from anywhere (the browser keeps the answer from the other origin), and our own page
    // (or a client that is not a browser) can still change things.
    expect((await cp.api("/api/v1/me", { headers: { ...tab, "sec-fetch-site": "same-site" } })).status).toBe(
      200,
    );
    const own = await cp.api("/api/v1/auth/logout", {
      method: "POST",
      headers: { ...tab, origin: cp.url, "sec-fetch-site": "same-origin" },
    });
    expect(own.status).toBe(204);
  });
});

describe("/readyz", () => {
  it("turns 503 when the database stops while liveness stays 200", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-readyz-"));
    chmodSync(dir, 0o755);
    const pg = await startEmbeddedPostgres(join(dir, "pg"));
    const cp = await startTestControlPlane({ DATABASE_URL: pg.url });
    expect((await cp.api("/readyz")).status).toBe(200);
    await pg.stop();
    const down = await cp.api("/readyz");
    expect(down.status).toBe(503);
    expect(await json(down)).toMatchObject({ status: "unavailable", checks: { database: "down" } });
    expect((await cp.api("/healthz")).status).toBe(200);
  });
});
