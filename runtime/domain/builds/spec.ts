import type { WorkspaceSecrets, WorkspaceSpec } from "../../../stacks/driver.ts";
import type { WorkspaceRow } from "../../store/rows.ts";
import type { SecretStore } from "../../store/secrets.ts";

/** Builds the driver's input from the database row and the sealed secrets, fresh for every build. */
export async function workspaceSpec(
  secrets: Pick<SecretStore, "read">,
  workspace: WorkspaceRow,
  controlPlaneUrl: string,
  agentToken: string,
): Promise<WorkspaceSpec> {
  const secret = async (name: string) => {
    const value = await secrets.read(workspace.id, name);
    if (value === null) throw new Error(`workspace ${workspace.id} has no ${name} secret`);
    return value;
  };
  const sealed: WorkspaceSecrets = {
    agentToken,
    ttydCredential: await secret("ttyd-credential"),
    resticPassword: await secret("restic-password"),
  };
  return {
    workspaceId: workspace.id,
    ownerId: workspace.ownerId,
    location: workspace.location,
    serverType: workspace.serverType,
    volumeSizeGb: workspace.volumeSizeGb,
    controlPlaneUrl,
    secrets: sealed,
  };
}
