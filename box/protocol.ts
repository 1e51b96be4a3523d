/**
 * The agent API, version 1: the contract between the box agent (box/) and the control plane (runtime/).
 * Both sides import this file, so it imports nothing but zod.
 *
 * Transport: JSON over HTTP(S) to `<BERTH_CONTROL_PLANE_URL>/agent/v1/...`, `Authorization: Bearer <agent
 * token>`, plus a W3C `traceparent` header. A breaking change gets new paths (`/agent/v2/...`); within v1,
 * unknown object keys are stripped, so a newer agent may send fields an older control plane ignores.
 *
 *   POST /agent/v1/heartbeat   HeartbeatRequest → HeartbeatResponse   (every ~10 s, and at once on a lifecycle change)
 *   POST /agent/v1/events      EventsRequest    → EventsResponse      (batches from the agent's outbox)
 *
 * Errors use the control plane's one shape `{ error: { code, message, requestId? } }`: 400 invalid body
 * (the message names the field), 401 unknown/revoked token, 413 body over the limits below, 5xx retry.
 *
 * Exactly-once events:
 * - The agent numbers every event `seq` = 1, 2, 3… with no gaps, per agent instance (per agent token), and
 *   keeps unacknowledged events in an fsync'ed outbox on the volume (`system/state/outbox.jsonl`), so they
 *   survive agent, box and control-plane restarts. It sends the oldest pending events first, one request at
 *   a time, and resends them until acknowledged.
 * - The control plane keeps `ackedThrough` per instance and applies a batch with `planEventBatch` in the
 *   same transaction that stores the events: seq <= ackedThrough is a replay (acknowledged, never applied
 *   again), seq = ackedThrough + 1 is applied and advances it, and anything after a gap is left for later.
 *   It answers with the new `ackedThrough` (the highest contiguous seq), which the agent drops from its outbox.
 * - The heartbeat response carries the same `eventsAckedThrough`, and the agent sends no event before it has
 *   seen one. If the control plane is *behind* the agent's oldest pending event (a new instance, a restored
 *   database), the agent renumbers its pending events to start at `eventsAckedThrough + 1`: nothing is lost,
 *   and nothing the control plane already applied is sent again.
 * - Notification events also carry a random `dedupeKey`, unique per workspace, as a second line of defence.
 *
 * Desired state rides on the heartbeat response (pull, so no inbound connection to the box is needed):
 * the sessions to keep, a backup to run, keys to type. The agent reports each finished action in
 * `completed` on the following heartbeats until the control plane lists its id in `acks.completed`, and it
 * remembers finished ids so a resent action never runs twice.
 */
import { z } from "zod";

export const AGENT_API_VERSION = 1 as const;
export const AGENT_API_PREFIX = "/agent/v1";
export const AGENT_API_PATHS = {
  heartbeat: `${AGENT_API_PREFIX}/heartbeat`,
  events: `${AGENT_API_PREFIX}/events`,
} as const;

/** Limits. The control plane must also cap the raw body at `MAX_REQUEST_BYTES` before parsing it. */
export const LIMITS = {
  maxRequestBytes: 1024 * 1024,
  maxEventsPerBatch: 500,
  maxTitle: 200,
  maxMessage: 2000,
  maxLogMessage: 4096,
  maxLogFields: 32,
  maxFieldValue: 1024,
  maxError: 2000,
  maxKeys: 4096,
  maxSessions: 64,
  maxActions: 100,
  maxProcessName: 200,
} as const;
export const MAX_REQUEST_BYTES = LIMITS.maxRequestBytes;

export const SESSION_NAME_RE = /^[a-z0-9-]{1,32}$/;
export const sessionName = z.string().regex(SESSION_NAME_RE, "session name must match ^[a-z0-9-]{1,32}$");

/** Engineer: a shell, Claude Code started by hand. Guided: Claude Code starts in the project on the task. */
export const SESSION_MODES = ["engineer", "guided"] as const;
export type SessionMode = (typeof SESSION_MODES)[number];
/** A folder directly under user/projects: no separators, no leading dot, so never `..` or hidden. */
export const PROJECT_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";
export const PROJECT_NAME_RE = new RegExp(PROJECT_NAME_PATTERN);
export const projectName = z
  .string()
  .regex(PROJECT_NAME_RE, "must be 1-64 characters of [A-Za-z0-9._-] starting with a letter or digit");
export const MAX_TASK_CHARS = 4000;

/** The user's named secrets: environment variable names, values capped so every session can hold them all. */
export const USER_SECRET_NAME_PATTERN = "^[A-Z_][A-Z0-9_]{0,63}$";
export const USER_SECRET_NAME_RE = new RegExp(USER_SECRET_NAME_PATTERN);
export const MAX_USER_SECRET_BYTES = 8 * 1024;
export const MAX_USER_SECRETS = 50;
/**
 * Names a secret may not take: the panes' own plumbing (PATH, HOME, tmux's variables, Claude's config dir),
 * Berth's settings and the loader's hooks. Both sides check: the API refuses them, the agent skips them.
 */
const RESERVED_ENV = new Set([
  "PATH",
  "HOME",
  "SHELL",
  "USER",
  "LOGNAME",
  "TERM",
  "PWD",
  "TMUX",
  "TMUX_PANE",
  "CLAUDE_CONFIG_DIR",
  "CREDENTIALS_DIRECTORY",
]);
export function isReservedEnvName(name: string): boolean {
  return RESERVED_ENV.has(name) || name.startsWith("BERTH_") || name.startsWith("LD_");
}
export const userSecretName = z
  .string()
  .regex(USER_SECRET_NAME_RE, `must match ${USER_SECRET_NAME_PATTERN}`)
  .refine((n) => !isReservedEnvName(n), "is reserved for the box's own environment");

export const PANE_ROLES = ["claude", "logs", "shell"] as const;
export const paneRole = z.enum(PANE_ROLES);
export type PaneRole = z.infer<typeof paneRole>;

export const AGENT_LIFECYCLES = [
  "created",
  "starting",
  "ready",
  "start_error",
  "start_timeout",
  "shutting_down",
  "off",
] as const;
export const agentLifecycle = z.enum(AGENT_LIFECYCLES);
export type AgentLifecycle = z.infer<typeof agentLifecycle>;

const boundedText = (max: number) => z.string().max(max, `must be at most ${max} characters`);
const seq = z.int().min(1).max(Number.MAX_SAFE_INTEGER);
const isoTime = z.iso.datetime({ offset: true });
const id = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, "must be 1-128 characters of [A-Za-z0-9._:-]");
const traceparent = z
  .string()
  .regex(/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/, "must be a W3C traceparent")
  .optional();
const count = z.number().nonnegative().finite();

// ---------------------------------------------------------------------------------------------- heartbeat

export const metricsSnapshot = z.object({
  loadAvg1: count.optional(),
  memTotalBytes: count.optional(),
  memAvailableBytes: count.optional(),
  diskTotalBytes: count.optional(),
  diskFreeBytes: count.optional(),
  sessions: count.optional(),
  previewsOpen: count.optional(),
  outboxPending: count.optional(),
  outboxDropped: count.optional(),
  eventsSent: count.optional(),
  notificationsEmitted: count.optional(),
  notificationsDeduped: count.optional(),
  homeFailures: count.optional(),
});
export type MetricsSnapshot = z.infer<typeof metricsSnapshot>;

export const completedAction = z.object({
  id,
  kind: z.enum(["keys", "backup", "restore", "onboard"]),
  ok: z.boolean(),
  error: boundedText(LIMITS.maxError).optional(),
  at: isoTime,
});
export type CompletedAction = z.infer<typeof completedAction>;

export const heartbeatRequest = z.object({
  lifecycle: agentLifecycle,
  agentVersion: boundedText(64).min(1),
  uptimeSeconds: count,
  /** When this agent process started and when it first reached `ready`: the agent's part of time-to-ready. */
  startedAt: isoTime,
  readyAt: isoTime.optional(),
  lastError: boundedText(LIMITS.maxError).nullable(),
  tailnetIp: z.union([z.ipv4(), z.ipv6()]).optional(),
  /** Sessions that exist on the box now, so the control plane can see drift. */
  sessions: z.array(sessionName).max(LIMITS.maxSessions).optional(),
  /** Ports the agent currently reports as open previews (lets the control plane close stale ones). */
  openPreviewPorts: z.array(z.int().min(1).max(65535)).max(1000).optional(),
  metrics: metricsSnapshot,
  completed: z.array(completedAction).max(LIMITS.maxActions).default([]),
  /** The version of the secrets the agent holds (from `environmentVersion`): unchanged, none are resent. */
  environmentVersion: z.string().max(128).optional(),
});
export type HeartbeatRequest = z.infer<typeof heartbeatRequest>;
export type HeartbeatRequestInput = z.input<typeof heartbeatRequest>;

export const sendKeysAction = z.object({
  id,
  session: sessionName,
  /** The pane by role: Claude Code, logs/preview commands, or the shell. */
  pane: paneRole.default("claude"),
  /** Typed literally (tmux `send-keys -l`); `enter` then presses Enter. */
  keys: boundedText(LIMITS.maxKeys),
  enter: z.boolean().default(false),
  traceparent,
});
export type SendKeysAction = z.infer<typeof sendKeysAction>;

export const BACKUP_TRIGGERS = ["nightly", "pre-stop", "manual", "pre-restore"] as const;
export type BackupTrigger = (typeof BACKUP_TRIGGERS)[number];
const uuid = z.uuid();
const snapshotId = z.string().regex(/^[0-9a-f]{8,64}$/, "must be a restic snapshot id (hex)");
/**
 * A path of the workspace layout that a restore may replace: `user` or below it, relative, no `..`.
 * `system/` is the agent's own (its outbox and action state must never go back in time).
 */
export const RESTORE_PATH_RE = /^user(\/(?!\.\.?(\/|$))[^/\0]+)*$/;
export const restorePath = z.string().max(1024).regex(RESTORE_PATH_RE, "must be user/ or a path below it");

export const backupAction = z.object({
  id,
  traceparent,
  /** The control plane's `backups` row this run reports to (events carry it back). */
  backupId: uuid.optional(),
  trigger: z.enum(BACKUP_TRIGGERS).default("manual"),
  /** Apply the retention (`forget --prune`) after the backup: the nightly run does. */
  prune: z.boolean().default(false),
});
export type BackupAction = z.infer<typeof backupAction>;

/** How a guided session starts: Claude Code in `project` (null: user/projects itself), `task` as its prompt. */
export const guidedSession = z.object({
  session: sessionName,
  project: projectName.nullable(),
  task: boundedText(MAX_TASK_CHARS).min(1),
});
export type GuidedSession = z.infer<typeof guidedSession>;

/** One secret for the sessions' environment. Held in the agent's memory only, never written anywhere. */
export const environmentEntry = z.object({
  name: userSecretName,
  value: z.string().max(MAX_USER_SECRET_BYTES),
});
export type EnvironmentEntry = z.infer<typeof environmentEntry>;

export const MAX_ONBOARD_TEXT = 64 * 1024;
const permissionRule = boundedText(400).min(1);
/**
 * The onboarding interview's result, applied by the agent on the volume: the project folder (created, or
 * cloned from `source.url`), its CLAUDE.md (written only when the project has none; an existing one only
 * gains the import line), the generated part `.claude/berth-generated.md` (always replaced), the permission
 * lists merged into `.claude/settings.json`, the personal preferences imported by `~/.claude/CLAUDE.md`, and
 * the trust entry in Claude Code's `.claude.json`.
 */
export const onboardAction = z.object({
  id,
  project: projectName,
  source: z.discriminatedUnion("kind", [
    z.object({ kind: z.literal("new") }),
    z.object({ kind: z.literal("existing") }),
    z.object({ kind: z.literal("git"), url: boundedText(2048).min(1) }),
  ]),
  claudeMd: boundedText(MAX_ONBOARD_TEXT),
  generated: boundedText(MAX_ONBOARD_TEXT),
  permissions: z.object({
    allow: z.array(permissionRule).max(200),
    deny: z.array(permissionRule).max(200),
  }),
  personal: boundedText(MAX_ONBOARD_TEXT).nullable(),
  trust: z.boolean(),
  traceparent,
});
export type OnboardAction = z.infer<typeof onboardAction>;
export const restoreAction = z.object({
  id,
  traceparent,
  /** The `backups` row of the safety snapshot taken before anything is overwritten. */
  backupId: uuid,
  snapshot: snapshotId,
  /** Empty: all of `user/`. */
  paths: z.array(restorePath).max(LIMITS.maxActions).default([]),
});
export type RestoreAction = z.infer<typeof restoreAction>;

export const heartbeatResponse = z.object({
  /** Absent: leave sessions alone. Present: ensure these exist and kill any other session on the agent's socket. */
  sessions: z.array(sessionName).max(LIMITS.maxSessions).optional(),
  /** A backup to run; progress and outcome come back as `backup` events. */
  backup: backupAction.nullable().default(null),
  /** A restore to run (safety snapshot, staging, swap with sessions stopped); reported like a backup. */
  restore: restoreAction.nullable().default(null),
  sendKeys: z.array(sendKeysAction).max(LIMITS.maxActions).default([]),
  /** Guided sessions among `sessions`; the others start in engineer mode. */
  guided: z.array(guidedSession).max(LIMITS.maxSessions).default([]),
  /** Absent: keep what the agent holds. Present: the whole set for sessions created from now on. */
  environment: z.array(environmentEntry).max(MAX_USER_SECRETS).optional(),
  /** Names this set (no value goes into it); the agent echoes it, and the set is sent again only when it changes. */
  environmentVersion: z.string().max(128).optional(),
  onboard: z.array(onboardAction).max(10).default([]),
  acks: z.object({ completed: z.array(id).max(LIMITS.maxActions).default([]) }).default({ completed: [] }),
  /** The control plane's `ackedThrough` for this instance's events (see the exactly-once notes above). */
  eventsAckedThrough: z.int().min(0),
  heartbeatIntervalSeconds: z.int().min(1).max(300).optional(),
});
export type HeartbeatResponse = z.infer<typeof heartbeatResponse>;
export type HeartbeatResponseInput = z.input<typeof heartbeatResponse>;

// ---------------------------------------------------------------------------------------------- events

export const NOTIFICATION_KINDS = [
  "permission_prompt",
  "idle_prompt",
  "elicitation_dialog",
  "stop",
  "stop_failure",
  "osc",
] as const;
export const notificationPayload = z.object({
  kind: z.enum(NOTIFICATION_KINDS),
  /** Where it came from: a Claude Code hook, an OSC 9/777 sequence, or a bare BEL in the pane output. */
  source: z.enum(["hook", "osc9", "osc777", "bel"]),
  session: sessionName.nullable(),
  title: boundedText(LIMITS.maxTitle),
  message: boundedText(LIMITS.maxMessage),
  /** Unique per workspace; the control plane's `notifications (workspace, dedupe_key)` key. */
  dedupeKey: id,
  /** `stop`: how long Claude had been working (the control plane pushes only long turns' ends). */
  workedSeconds: z.int().min(0).optional(),
});
export type NotificationPayload = z.infer<typeof notificationPayload>;

export const previewPayload = z.object({
  port: z.int().min(1).max(65535),
  /** `http` when the process looks like a known web server, `tcp` when we only know something listens. */
  protocol: z.enum(["http", "tcp"]),
  /** The listening address as seen in /proc/net/tcp*: `127.0.0.1`, `0.0.0.0`, `::`, ... */
  address: boundedText(64),
  state: z.enum(["open", "closed"]),
  process: boundedText(LIMITS.maxProcessName).nullable(),
  pid: z.int().min(1).nullable(),
  framework: boundedText(40).nullable(),
});
export type PreviewPayload = z.infer<typeof previewPayload>;

/**
 * What Claude Code in a session is doing, from its hooks (box/notifications/claude-state.ts):
 * `working` (a prompt was submitted, a tool ran), `needs_you` (a permission request or a question),
 * `idle` (its turn ended, or its output went quiet after an interrupt), `error` (the turn failed: `detail`
 * holds the kind, e.g. `rate_limit`), `ended` (Claude exited). The event's `at` is the state's "since".
 */
export const CLAUDE_STATES = ["working", "needs_you", "idle", "error", "ended"] as const;
export const claudeState = z.enum(CLAUDE_STATES);
export type ClaudeState = z.infer<typeof claudeState>;
export const claudeStatePayload = z.object({
  session: sessionName,
  state: claudeState,
  /** The tool a permission request names, the error kind, or why the state was inferred (`quiet`). */
  detail: boundedText(200).nullable(),
});
export type ClaudeStatePayload = z.infer<typeof claudeStatePayload>;

/** Log levels are pino's, on both sides of the API: its names, and the numbers it writes them as. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const PINO_LEVELS: Readonly<Record<number, LogLevel>> = {
  10: "trace",
  20: "debug",
  30: "info",
  40: "warn",
  50: "error",
  60: "fatal",
};

const fieldValue = z.union([boundedText(LIMITS.maxFieldValue), z.number(), z.boolean(), z.null()]);
export const logPayload = z.object({
  level: z.enum(LOG_LEVELS),
  msg: boundedText(LIMITS.maxLogMessage),
  fields: z
    .record(z.string().max(64), fieldValue)
    .refine((r) => Object.keys(r).length <= LIMITS.maxLogFields, {
      message: `at most ${LIMITS.maxLogFields} fields`,
    })
    .default({}),
});
export type LogPayload = z.infer<typeof logPayload>;

export const lifecyclePayload = z.object({
  from: agentLifecycle,
  to: agentLifecycle,
  error: boundedText(LIMITS.maxError).nullable().default(null),
});
export type LifecyclePayload = z.infer<typeof lifecyclePayload>;

/** A backup or restore run of the agent: progress while it runs, then its outcome. */
export const backupPayload = z.object({
  /** The `backups` row (for a restore: its safety snapshot's row). */
  backupId: uuid,
  operation: z.enum(["backup", "restore"]),
  phase: z.enum(["running", "succeeded", "failed"]),
  percent: z.number().min(0).max(1).optional(),
  snapshotId: snapshotId.optional(),
  bytesAdded: count.optional(),
  files: count.optional(),
  durationMs: count.optional(),
  error: boundedText(LIMITS.maxError).optional(),
});
export type BackupPayload = z.infer<typeof backupPayload>;

const eventBase = { seq, at: isoTime };
export const agentEvent = z.discriminatedUnion("type", [
  z.object({ ...eventBase, type: z.literal("notification"), payload: notificationPayload }),
  z.object({ ...eventBase, type: z.literal("preview"), payload: previewPayload }),
  z.object({ ...eventBase, type: z.literal("log"), payload: logPayload }),
  z.object({ ...eventBase, type: z.literal("lifecycle"), payload: lifecyclePayload }),
  z.object({ ...eventBase, type: z.literal("claude_state"), payload: claudeStatePayload }),
  z.object({ ...eventBase, type: z.literal("backup"), payload: backupPayload }),
]);
export type AgentEvent = z.infer<typeof agentEvent>;
export type AgentEventType = AgentEvent["type"];
/** An event before the outbox numbers it. */
export type AgentEventDraft = { [T in AgentEvent as T["type"]]: Omit<T, "seq"> }[AgentEventType];

export const eventsRequest = z.object({
  events: z
    .array(agentEvent)
    .min(1, "a batch needs at least one event")
    .max(LIMITS.maxEventsPerBatch, `a batch holds at most ${LIMITS.maxEventsPerBatch} events`)
    .superRefine((events, ctx) => {
      for (let i = 1; i < events.length; i++) {
        if (events[i]!.seq !== events[i - 1]!.seq + 1)
          ctx.addIssue({ code: "custom", path: [i, "seq"], message: "seq must increase by exactly 1" });
      }
    }),
});
export type EventsRequest = z.infer<typeof eventsRequest>;

export const eventsResponse = z.object({
  ackedThrough: z.int().min(0),
  /** How many events of this batch were replays the control plane had already applied. */
  replayed: z.int().min(0).default(0),
});
export type EventsResponse = z.infer<typeof eventsResponse>;

/**
 * The control plane's dedupe rule, as a pure function so both sides test the same thing. Call it inside the
 * transaction that holds the instance row lock, apply `toApply`, store `ackedThrough`, and answer with it.
 */
export function planEventBatch(
  ackedThrough: number,
  events: readonly AgentEvent[],
): { toApply: AgentEvent[]; replayed: number; ackedThrough: number } {
  const sorted = [...events].sort((a, b) => a.seq - b.seq);
  const toApply: AgentEvent[] = [];
  let replayed = 0;
  let through = ackedThrough;
  for (const event of sorted) {
    if (event.seq <= through) replayed++;
    else if (event.seq === through + 1) {
      toApply.push(event);
      through = event.seq;
    } else break; // a gap: the missing seq must arrive first
  }
  return { toApply, replayed, ackedThrough: through };
}

// ---------------------------------------------------------------------------------------------- errors

export const errorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), requestId: z.string().optional() }),
});
export type ErrorBody = z.infer<typeof errorBody>;

/** One line naming every problem: `events.3.payload.title: must be at most 200 characters; ...`. */
export function describeIssues(error: z.ZodError, max = 5): string {
  const parts = error.issues
    .slice(0, max)
    .map((i) => `${i.path.length ? i.path.map(String).join(".") : "(body)"}: ${i.message}`);
  if (error.issues.length > max) parts.push(`and ${error.issues.length - max} more`);
  return parts.join("; ");
}

// ---------------------------------------------------------------------------------------------- onboarding

/**
 * Why `url` may not be cloned, or null. Both sides check it: the API answers 400, the agent refuses again
 * before git sees it. Allowed: https://, ssh://, git:// and scp-like `user@host:path`; local paths and
 * file:// only where `allowLocal` (local mode: the box is this machine and its user's). Refused: anything
 * git could read as an option (`-` first), transport helpers (`ext::`, `fd::`), embedded passwords (they
 * would land in .git/config and logs: keep tokens in the secrets store), whitespace and control characters.
 */
export function cloneUrlProblem(url: string, opts: { allowLocal: boolean }): string | null {
  if (url.length === 0 || url.length > 2048) return "must be 1-2048 characters";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (/[\s\u0000-\u001f\u007f]/.test(url)) return "must not contain whitespace or control characters";
  if (url.startsWith("-")) return "must not start with -";
  if (/^[A-Za-z][A-Za-z0-9+.-]*::/.test(url)) return "transport helpers (such as ext::) are not allowed";
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1]?.toLowerCase();
  if (scheme) {
    if (scheme === "file") return opts.allowLocal ? null : "file:// URLs are only allowed in local mode";
    if (!["https", "ssh", "git"].includes(scheme))
      return `the ${scheme}:// scheme is not allowed (use https, ssh or git)`;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return "is not a valid URL";
    }
    if (parsed.password) return "must not embed a password or token (store it as a secret instead)";
    if (!parsed.hostname || parsed.hostname.startsWith("-")) return "needs a host name";
    return null;
  }
  if (url.startsWith("/")) return opts.allowLocal ? null : "local paths are only allowed in local mode";
  // scp-like: [user@]host:path, where the host has no slash and does not start with -.
  const scp = /^(?:([A-Za-z0-9._-]+)@)?([A-Za-z0-9.-]+):(.+)$/.exec(url);
  if (scp && !scp[2]!.startsWith("-") && !scp[1]?.startsWith("-")) return null;
  return "must be an https://, ssh:// or git:// URL, or user@host:path";
}
