// `berth doctor` against fake providers on loopback: all good → every line ok; each credential wrong in
// turn → exactly its line fails, with a fix.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeProviders, GOOD, startFakeProviders } from "../test/fake-providers.ts";
import { formatResults, runDoctor } from "./doctor.ts";

let fake: FakeProviders;
beforeAll(async () => {
  fake = await startFakeProviders();
});
afterAll(() => fake.close());

const statuses = (results: Awaited<ReturnType<typeof runDoctor>>) =>
  Object.fromEntries(results.map((r) => [r.name, r.status]));

const ALL = [
  "hetzner",
  "box-image",
  "cloudflare",
  "state-backend",
  "tailscale",
  "clerk",
  "stripe",
  "deepgram",
  "dns",
  "metrics",
  "clock",
];

describe("berth doctor", () => {
  it("every credential, record and the image good: every line ok", async () => {
    const results = await runDoctor(fake.env);
    expect(results.map((r) => r.name)).toEqual(ALL);
    expect(results.filter((r) => r.status !== "ok")).toEqual([]);
    const text = formatResults(results);
    expect(text.trim().split("\n")).toHaveLength(ALL.length);
    for (const value of Object.values(GOOD)) expect(text).not.toContain(value);
  });

  const wrong: [credential: keyof typeof GOOD, line: string, fix: RegExp][] = [
    ["HCLOUD_TOKEN", "hetzner", /Hetzner console/],
    ["CLOUDFLARE_API_TOKEN", "cloudflare", /Workers R2 Storage Write/],
    ["CLOUDFLARE_ACCOUNT_ID", "cloudflare", /CLOUDFLARE_ACCOUNT_ID/],
    ["BERTH_PULUMI_BACKEND_ACCESS_KEY_ID", "state-backend", /stateAccessKeyId/],
    ["BERTH_PULUMI_BACKEND_SECRET_ACCESS_KEY", "state-backend", /stateSecretAccessKey/],
    ["TAILSCALE_OAUTH_CLIENT_ID", "tailscale", /OAuth client/],
    ["TAILSCALE_OAUTH_CLIENT_SECRET", "tailscale", /OAuth client/],
    ["CLERK_SECRET_KEY", "clerk", /Clerk dashboard/],
    ["STRIPE_SECRET_KEY", "stripe", /Stripe dashboard/],
    ["DEEPGRAM_API_KEY", "deepgram", /Deepgram console/],
  ];
  it.each(wrong)("%s wrong: only the %s line fails, with a fix", async (credential, line, fix) => {
    const results = await runDoctor({ ...fake.env, [credential]: `${GOOD[credential].slice(0, -4)}bad0` });
    const failed = results.filter((r) => r.status === "fail");
    expect(failed.map((r) => r.name)).toEqual([line]);
    expect(failed[0]!.fix).toMatch(fix);
    // The image check depends on a working Hetzner token: it is skipped, not failed.
    expect(statuses(results)["box-image"]).toBe(credential === "HCLOUD_TOKEN" ? "skip" : "ok");
    // Credentials never reach the output (the account id is not one; the fix names it).
    if (credential !== "CLOUDFLARE_ACCOUNT_ID") {
      expect(formatResults(results)).not.toContain(`${GOOD[credential].slice(0, -4)}bad0`);
    }
  });

  it("a missing credential fails its line naming the variable; optional ones are skipped", async () => {
    const { CLERK_SECRET_KEY: _c, STRIPE_SECRET_KEY: _s, ...env } = fake.env;
    const results = await runDoctor(env);
    expect(results.find((r) => r.name === "clerk")).toMatchObject({
      status: "fail",
      detail: "CLERK_SECRET_KEY is not set",
    });
    expect(statuses(results).stripe).toBe("skip");
    expect(results.filter((r) => r.status === "fail")).toHaveLength(1);
  });

  it("an open /metrics is a warning with a fix, not a failure", async () => {
    const { BERTH_METRICS_TOKEN: _t, ...env } = fake.env;
    const results = await runDoctor(env);
    expect(results.find((r) => r.name === "metrics")).toMatchObject({ status: "warn" });
    expect(results.filter((r) => r.status === "fail")).toEqual([]);
    expect(formatResults(results)).toMatch(
      /^warn {2}metrics .*BERTH_METRICS_TOKEN is not set.*→ fix: set BERTH_METRICS_TOKEN/m,
    );
  });

  it("no box snapshot, a missing DNS record, a skewed clock: each fails on its own line", async () => {
    fake.images = [];
    fake.records.delete("berth-doctor-check.preview.berthbox.dev");
    fake.clockOffsetMs = 5 * 60_000;
    try {
      const results = await runDoctor(fake.env);
      expect(results.filter((r) => r.status === "fail").map((r) => r.name)).toEqual([
        "box-image",
        "dns",
        "clock",
      ]);
      const text = formatResults(results);
      expect(text).toMatch(/FAIL {2}box-image .*packer build/);
      expect(text).toMatch(/FAIL {2}dns .*berth-doctor-check\.preview\.berthbox\.dev has no A record/);
      expect(text).toMatch(/FAIL {2}clock .*(299|300)s off .*time sync/);
    } finally {
      fake.images = [{ id: 4242, name: "berth-box-7" }];
      fake.records.add("berth-doctor-check.preview.berthbox.dev");
      fake.clockOffsetMs = 0;
    }
  });

  it("an unreachable provider fails its line and says which host", async () => {
    const results = await runDoctor({ ...fake.env, CLERK_API_URL: "http://127.0.0.1:9/clerk" });
    expect(results.find((r) => r.name === "clerk")).toMatchObject({ status: "fail" });
    expect(results.find((r) => r.name === "clerk")!.detail).toContain("cannot reach 127.0.0.1:9");
  });
});
