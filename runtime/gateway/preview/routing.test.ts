import { describe, expect, it } from "vitest";
import { type PreviewRoute, PreviewRoutes } from "./routing.ts";

const ID = "0190f6a2-5b7c-7d3e-8f10-1234567890ab";
const route = (share: PreviewRoute["share"], shareVersion: number): PreviewRoute => ({
  previewId: ID,
  workspaceId: "0190f6a2-5b7c-7d3e-8f10-ba0987654321",
  ownerId: "u1",
  port: 5173,
  share,
  shareVersion,
  instance: null,
});

describe("preview routes", () => {
  it("does not answer a request after an invalidation with a load that started before it", async () => {
    // The database as the loads see it: shared by link until the revoke commits.
    let stored = route("link", 1);
    const loads: Array<(r: PreviewRoute) => void> = [];
    const routes = new PreviewRoutes(
      () =>
        new Promise<PreviewRoute>((resolve) => {
          const seen = stored;
          loads.push(() => resolve(seen));
        }),
    );
    // A request before the revoke starts a load, which reads the row as it was.
    const before = routes.get(ID);
    // The revoke commits and drops the cached route (the API's dropCached, then NOTIFY).
    stored = route("owner", 2);
    routes.invalidate(`p:${ID}`);
    // A request after the revoke (a revoked link's cookie) must not be answered by the earlier read.
    const after = routes.get(ID);
    for (const finish of loads) finish(stored);
    expect(await before).toMatchObject({ share: "link" });
    expect(await after).toMatchObject({ share: "owner", shareVersion: 2 });
  });
});
