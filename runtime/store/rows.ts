/**
 * The row types of the data model, defined once, here. Code above the store reads rows only through the
 * authorization layer (store.ts) and names their types from this module, never from schema.ts, whose
 * table objects are how queries are written and stay inside the store.
 */
import type {
  AGENT_LIFECYCLES,
  BUILD_REASONS,
  BUILD_STATUSES,
  BUILD_TRANSITIONS,
  backups,
  notifications,
  previews,
  pushSubscriptions,
  sessions,
  WORKSPACE_STATES,
  workspaceBuilds,
  workspaceInstances,
  workspaces,
} from "./schema.ts";

/** The values of the enum columns, for code above the store that must list them (the API's response schemas). */
export {
  BACKUP_STATUSES,
  BUILD_REASONS,
  BUILD_STATUSES,
  BUILD_TRANSITIONS,
  WORKSPACE_STATES,
} from "./schema.ts";

export type WorkspaceRow = typeof workspaces.$inferSelect;
export type BuildRow = typeof workspaceBuilds.$inferSelect;
export type InstanceRow = typeof workspaceInstances.$inferSelect;
export type SessionRow = typeof sessions.$inferSelect;
export type PreviewRow = typeof previews.$inferSelect;
export type NotificationRow = typeof notifications.$inferSelect;
export type PushSubscriptionRow = typeof pushSubscriptions.$inferSelect;
export type BackupRow = typeof backups.$inferSelect;

export type WorkspaceState = (typeof WORKSPACE_STATES)[number];
export type BuildTransition = (typeof BUILD_TRANSITIONS)[number];
export type BuildReason = (typeof BUILD_REASONS)[number];
export type BuildStatus = (typeof BUILD_STATUSES)[number];
export type AgentLifecycle = (typeof AGENT_LIFECYCLES)[number];
