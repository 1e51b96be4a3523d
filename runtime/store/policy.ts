/**
 * The rights table of the authorization layer (after Coder's dbauthz): which actor may do what, and to
 * which rows. Every method of the authorized store (store.ts) asks this module before it touches the
 * database; the preview proxy asks it about cached routes. There are two questions:
 * - the right: may this kind of actor do this at all (a reconciler never creates workspaces);
 * - the rows: a user reaches the workspaces they own and everything in them, an agent the one workspace
 *   its instance belongs to, a system actor every row its rights cover.
 * A refusal is NotFound, whichever question failed: someone else's resource is indistinguishable from a
 * missing one (never 403).
 */
import { NotFound } from "../platform/errors.ts";
import type { Actor, SystemRole } from "./actors.ts";

export const RIGHTS = [
  "workspace.read",
  "workspace.create",
  /** Ask for a build: hibernate, wake, destroy. */
  "workspace.transition",
  /** Reach the box: its terminal address and terminal credential (the relay, probes, the agent's proof). */
  "workspace.connect",
  "workspace.reconcile",
  "workspace.health",
  /** The owner's settings of a workspace (idle timeout) and "keep running" against autostop. */
  "workspace.configure",
  /** Idle autostop: find idle workspaces, warn their owners (runtime/workers/autostop.ts). */
  "workspace.autostop",
  /** Operators: list every stack, repair one, forget one. */
  "workspace.operate",
  "build.read",
  "build.cancel",
  /** The build worker: claim, heartbeat, finish and reap builds; write build logs; open instances. */
  "build.run",
  "session.read",
  "session.write",
  /** Mint a terminal token for a session (and audit it). */
  "session.open",
  /** Type into a session's pane: queue the agent's keys action (voice transcripts). */
  "session.input",
  /** Transcribe speech: record and read one's own voice seconds. */
  "voice.use",
  /** Record terminal activity and read why a relayed terminal ended. */
  "session.activity",
  /** The agent's report of what Claude Code is doing in a session of its workspace. */
  "session.claude",
  "preview.read",
  /** Declare and close previews. */
  "preview.write",
  "preview.share",
  /** Issue the one-time code that signs the owner into the preview's own host. */
  "preview.open",
  /** The agent's detected dev servers. */
  "preview.detect",
  /** The preview proxy's routing rows (owner, share state, box address), for admission decisions. */
  "preview.route",
  "notification.read",
  "notification.write",
  "notification.create",
  /** The agent's own instance: heartbeat, lifecycle, event cursor, actions, tailnet address. */
  "agent.report",
  "secret.read",
  "secret.write",
  /** The user's own named secrets (user-secrets.ts): list names, write values (never read them back). */
  "user_secret.list",
  "user_secret.write",
  /** The agent receives its workspace's user secrets, opened, for its sessions' environment. */
  "user_secret.deliver",
  /** Ask the agent to apply an onboarding interview's files, and read the outcome. */
  "workspace.onboard",
  /** A user's own Web Push subscriptions and tab presence. */
  "push.subscribe",
  /** Claim a stored notification for Web Push and reach its recipient's subscriptions. */
  "push.send",
  /** A workspace's backup runs and snapshots. */
  "backup.read",
  /** Ask the box for a backup or a restore, fail a run that never reported. */
  "backup.run",
  /** A user's own account: sign out everywhere. */
  "account.manage",
  /** A user's own personal API tokens (api-tokens.ts): create, list, revoke. */
  "api_token.manage",
  /** Billing (runtime/workers/metering.ts): meter minutes, deliver them to Stripe, apply Stripe's webhooks. */
  "billing.meter",
  /** A user's usage, plan and quota standing: their own (users), anyone's (operator, billing). */
  "billing.read",
  /** How many meter events wait for delivery to Stripe: a count, nobody's usage (/metrics). */
  "billing.backlog",
  /** Change a user's plan (operators). */
  "billing.manage",
  /** A box's load, memory and disk samples: the agent reports its own, owners and operators read them. */
  "telemetry.report",
  "telemetry.read",
  /** Search the central log store: one's own workspaces' lines (users), every line (operators). */
  "log.read",
  /** Add lines to the central log store: an agent its own workspace's, the log writer any. */
  "log.write",
  /** Create the log store's daily partitions and drop those past retention. */
  "log.retain",
  /** Look up credentials before an actor exists: agent tokens, terminal tokens, preview codes, users. */
  "credentials.verify",
] as const;
export type Right = (typeof RIGHTS)[number];

const USER_RIGHTS: readonly Right[] = [
  "workspace.read",
  "workspace.create",
  "workspace.transition",
  "workspace.connect",
  "workspace.configure",
  "build.read",
  "build.cancel",
  "session.read",
  "session.write",
  "session.open",
  "session.input",
  "voice.use",
  "preview.read",
  "preview.write",
  "preview.share",
  "preview.open",
  "notification.read",
  "notification.write",
  // A new workspace's secrets are sealed in the user's create; users never read them back.
  "secret.write",
  "user_secret.list",
  "user_secret.write",
  "workspace.onboard",
  "push.subscribe",
  "backup.read",
  "backup.run",
  "account.manage",
  "api_token.manage",
  "billing.read",
  "telemetry.read",
  "log.read",
];

const AGENT_RIGHTS: readonly Right[] = [
  "workspace.read",
  "workspace.connect",
  "session.read",
  "session.claude",
  "preview.detect",
  "notification.create",
  "agent.report",
  "user_secret.deliver",
  "telemetry.report",
  "log.write",
];

const SYSTEM_RIGHTS: Record<SystemRole, readonly Right[]> = {
  auth: ["credentials.verify"],
  builds: ["workspace.read", "build.read", "build.run", "secret.read", "secret.write"],
  reconciler: ["workspace.read", "workspace.reconcile"],
  health: ["workspace.read", "workspace.connect", "workspace.health"],
  gateway: ["preview.route", "session.activity"],
  operator: [
    "workspace.read",
    "workspace.operate",
    "build.read",
    "secret.read",
    "billing.read",
    "billing.manage",
    "telemetry.read",
    "log.read",
  ],
  billing: ["workspace.read", "workspace.transition", "billing.meter", "billing.read"],
  autostop: ["workspace.read", "workspace.transition", "workspace.autostop"],
  push: ["push.send"],
  backups: ["workspace.read", "backup.read", "backup.run", "secret.read"],
  /** Aggregates computed at scrape time and the telemetry history's pruning. */
  metrics: ["telemetry.read", "backup.read", "billing.backlog"],
  logs: ["log.write", "log.retain"],
};

const USER: ReadonlySet<Right> = new Set(USER_RIGHTS);
const AGENT: ReadonlySet<Right> = new Set(AGENT_RIGHTS);
const SYSTEM = new Map<SystemRole, ReadonlySet<Right>>(
  Object.entries(SYSTEM_RIGHTS).map(([role, rights]) => [role as SystemRole, new Set(rights)]),
);

/** The rights an actor holds, whatever the row. */
export function rightsOf(actor: Actor): ReadonlySet<Right> {
  switch (actor.kind) {
    case "user":
      return USER;
    case "agent":
      return AGENT;
    case "system":
      return SYSTEM.get(actor.role) ?? new Set();
  }
}

/** Which rows an actor's right reaches: every row, one owner's workspaces, or one workspace. */
export type RowScope =
  | { kind: "all" }
  | { kind: "owner"; userId: string }
  | { kind: "workspace"; workspaceId: string };

/** Rows in the data model belong to a workspace, and a workspace to its owner. */
export interface Owned {
  ownerId: string;
  workspaceId: string;
}

/** The rows `right` reaches for `actor`; NotFound(`what`) when the actor does not hold the right at all. */
export function rowScope(actor: Actor, right: Right, what: string): RowScope {
  if (!rightsOf(actor).has(right)) throw new NotFound(what);
  switch (actor.kind) {
    case "user":
      return { kind: "owner", userId: actor.userId };
    case "agent":
      return { kind: "workspace", workspaceId: actor.workspaceId };
    case "system":
      return { kind: "all" };
  }
}

/** Whether `actor` may use `right` on `row`. */
export function allows(actor: Actor, right: Right, row: Owned): boolean {
  if (!rightsOf(actor).has(right)) return false;
  switch (actor.kind) {
    case "user":
      return row.ownerId === actor.userId;
    case "agent":
      return row.workspaceId === actor.workspaceId;
    case "system":
      return true;
  }
}

/** `allows`, or NotFound(`what`). */
export function authorize(actor: Actor, right: Right, what: string, row: Owned): void {
  if (!allows(actor, right, row)) throw new NotFound(what);
}
