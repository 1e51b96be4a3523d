import type { WorkspaceSecrets, WorkspaceSpec } from "../../../stacks/driver.ts";
import type { SecretBox } from "../../platform/secret-box.ts";
import type { Db } from "../../store/client.ts";
import { readWorkspaceSecret } from "../workspaces/secrets.ts";
import type { WorkspaceRow } from "../workspaces/service.ts";

/** Builds the driver's input from the database row and the sealed secrets, fresh for every build. */
export async function workspaceSpec(
  db: Db,
  box: SecretBox,
  workspace: WorkspaceRow,
  controlPlaneUrl: string,
  agentToken: string,
): Promise<WorkspaceSpec> {
  const secret = async (name: string) => {
    const value = await readWorkspaceSecret(db, box, workspace.id, name);
    if (value === null) throw new Error(`workspace ${workspace.id} has no ${name} secret`);
    return value;
  };
  const secrets: WorkspaceSecrets = {
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
    secrets,
  };
}
