/** Public API of the tmux half of the box agent. */
export {
  assertSessionName,
  InvalidSessionNameError,
  isValidSessionName,
  SESSION_NAME_PATTERN,
} from "./names.ts";
export { DEFAULT_LOG_ROTATION, type LogRotation, sessionLogPath } from "./session-log.ts";
export {
  type EnsureResult,
  MAX_SEND_KEYS_CHARS,
  PANE_ROLES,
  type PaneRole,
  type SessionInfo,
  SessionNotFoundError,
  TmuxSessions,
  type TmuxSessionsOptions,
} from "./sessions.ts";
export { TmuxClient, TmuxCommandError, type TmuxServerOptions, type TmuxSocket } from "./tmux-command.ts";
