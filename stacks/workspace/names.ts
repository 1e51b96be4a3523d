/** Names and labels shared by the stack program, the driver (which finds servers by label) and the policies. */

/** Hetzner label every workspace resource carries; its value is the workspace id. */
export const WORKSPACE_LABEL = "berth-workspace";
export const ROLE_LABEL = "berth-role";
export const WORKSPACE_ROLE = "workspace";

/** The tailnet's CGNAT range: tailnet peers (the control plane among them) reach the box from here. */
export const TAILNET_CIDR = "100.64.0.0/10";
export const TTYD_PORT = 7681;
export const WORLD_CIDRS = ["0.0.0.0/0", "::/0"] as const;

const WORKSPACE_ID = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function assertWorkspaceId(id: string): void {
  if (!WORKSPACE_ID.test(id) || id.length > 64) {
    throw new Error(`workspace id ${JSON.stringify(id)} must be lowercase letters, digits and inner dashes`);
  }
}

/** `ws-<id>`: one stack per workspace in one project. */
export function stackName(workspaceId: string): string {
  assertWorkspaceId(workspaceId);
  return `ws-${workspaceId}`;
}

export function workspaceIdFromStack(stack: string): string | null {
  // `stack ls` may qualify names as org/project/stack.
  const m = /^ws-([a-z0-9-]+)$/.exec(stack.split("/").pop() ?? "");
  return m ? m[1]! : null;
}

/**
 * `<prefix>-<id>`: the volume, server, hostname and bucket names. It must be a DNS label (hostname, R2
 * bucket: 3 to 63 characters), so an id too long for the prefix is refused rather than truncated: two
 * workspaces must never share a bucket.
 */
export function resourceName(prefix: string, workspaceId: string): string {
  assertWorkspaceId(workspaceId);
  const name = `${prefix}-${workspaceId}`;
  if (!DNS_LABEL.test(name) || name.length < 3) {
    throw new Error(`resource name ${name} is not a DNS label of at most 63 characters`);
  }
  return name;
}
