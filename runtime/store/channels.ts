/**
 * Postgres NOTIFY channels: the store sends on them when it commits a change others wait for, and the
 * waiting side (workers, SSE followers, caches) subscribes through the shared listener (listener.ts).
 */

/** A build was enqueued; payload: the build id. Build workers wake up and claim. */
export const BUILD_QUEUED_CHANNEL = "berth_build_queued";
/** A running build was asked to stop; payload: the build id. Its worker aborts the driver. */
export const BUILD_CANCEL_CHANNEL = "berth_build_cancel";
/** Lines were appended to a build's log; payload: the build id. SSE followers read on. */
export const BUILD_LOG_CHANNEL = "berth_build_log";
/** A notification was stored; payload `<user id>:<notification id>`. The user's SSE feeds fetch it. */
export const NOTIFICATION_CHANNEL = "berth_notification";
/**
 * A preview's routing rows changed (migration 0002's triggers); payload `p:<preview id>`, `w:<workspace
 * id>` or anything else for all. Every replica's routing cache drops the stale entries.
 */
export const ROUTE_CHANNEL = "berth_preview_route";
/** A session's Claude state changed; payload `<user id>:<session id>`. The owner's SSE feeds fetch it. */
export const SESSION_STATE_CHANNEL = "berth_session_state";
