import type { WorkspaceRow } from "../authz/scope.ts";
import type { ApiRouter } from "../http/context.ts";

/** The client-facing shape of a workspace: no addresses, no credentials, ever. */
export function presentWorkspace(w: WorkspaceRow) {
  return {
    id: w.id,
    name: w.name,
    state: w.state,
    location: w.location,
    serverType: w.serverType,
    volumeSizeGb: w.volumeSizeGb,
    stateChangedAt: w.stateChangedAt,
    createdAt: w.createdAt,
  };
}

export function workspaceRoutes(router: ApiRouter): void {
  router.get("/api/v1/workspaces", async (ctx) => {
    ctx.body = { workspaces: (await ctx.state.scope.listWorkspaces()).map(presentWorkspace) };
  });

  router.get("/api/v1/workspaces/:id", async (ctx) => {
    ctx.body = { workspace: presentWorkspace(await ctx.state.scope.workspace(ctx.params.id!)) };
  });
}
