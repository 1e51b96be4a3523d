/**
 * Who acts on the store. Every read and write of an owned row names its actor; there is no anonymous or
 * null actor. People are `user` actors; the control plane's own jobs are named `system` actors with narrow
 * rights (policy.ts); a box agent is the `agent` actor of its one instance, and reaches that instance's
 * workspace only.
 */
import { NotFound } from "../platform/errors.ts";

/** A signed-in person. */
export interface UserActor {
  readonly kind: "user";
  readonly userId: string;
  readonly externalId: string;
  readonly isAdmin: boolean;
}

/**
 * The control plane's own callers, each with the rights its job needs (policy.ts):
 * - `auth`: checks credentials before any other actor exists (agent tokens, terminal tokens, preview codes,
 *   user rows);
 * - `builds`: the build worker (claims and runs builds, opens and closes instances, seals driver secrets);
 * - `reconciler`: fixes drift between records and what the driver observes;
 * - `health`: the health prober (reads box addresses and terminal credentials, records verdicts);
 * - `gateway`: the relay's and the preview proxy's bookkeeping (routing rows, terminal activity);
 * - `operator`: `berth stacks` and the admin API (list, diff, repair, forget any workspace);
 * - `billing`, `autostop`: stop workspaces for their reasons (autostop: runtime/workers/autostop.ts);
 * - `push`: sends Web Push for stored notifications (runtime/domain/push);
 * - `backups`: the nightly backup job, the pre-stop backup and exports (reads the repository password);
 * - `metrics`: the fleet-wide figures `/metrics` computes when scraped (box telemetry, backup age, the
 *   meter outbox backlog);
 * - `logs`: writes the control plane's own lines to the central log store and applies its retention.
 */
export const SYSTEM_ROLES = [
  "auth",
  "builds",
  "reconciler",
  "health",
  "gateway",
  "operator",
  "billing",
  "autostop",
  "push",
  "backups",
  "metrics",
  "logs",
] as const;
export type SystemRole = (typeof SYSTEM_ROLES)[number];

export interface SystemActor {
  readonly kind: "system";
  readonly role: SystemRole;
  /** The admin whose request an operator action serves; null for the command line. */
  readonly onBehalfOf: string | null;
}

/** A box agent, authenticated by its instance's token. */
export interface AgentActor {
  readonly kind: "agent";
  readonly instanceId: string;
  readonly workspaceId: string;
}

export type Actor = UserActor | SystemActor | AgentActor;

const system = (role: SystemRole): SystemActor => Object.freeze({ kind: "system", role, onBehalfOf: null });

/** The named system actors. */
export const SYSTEM: Readonly<Record<SystemRole, SystemActor>> = Object.freeze(
  Object.fromEntries(SYSTEM_ROLES.map((role) => [role, system(role)])) as Record<SystemRole, SystemActor>,
);

export function agentActor(instance: { id: string; workspaceId: string }): AgentActor {
  return Object.freeze({ kind: "agent", instanceId: instance.id, workspaceId: instance.workspaceId });
}

/**
 * An admin's request acting as the operator. Anyone else is refused with the same 404 as a missing
 * resource: to them the admin API does not exist.
 */
export function operatorFor(user: UserActor): SystemActor {
  if (!user.isAdmin) throw new NotFound("resource");
  return Object.freeze({ kind: "system", role: "operator", onBehalfOf: user.userId });
}

/** How logs and the audit log name an actor: `user:<id>`, `system:reconciler`, `system:agent(<instance>)`. */
export function actorName(actor: Actor): string {
  switch (actor.kind) {
    case "user":
      return `user:${actor.userId}`;
    case "system":
      return `system:${actor.role}`;
    case "agent":
      return `system:agent(${actor.instanceId})`;
  }
}
