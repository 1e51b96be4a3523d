/**
 * The control plane's data model. Postgres is the single source of truth (DESIGN.md §1); SQL migrations
 * under ./migrations are generated from this file with `npm run db:generate` and committed.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  boolean,
  check,
  customType,
  date,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  real,
  text,
  timestamp,
  uniqueIndex,
  uuid,
  varchar,
} from "drizzle-orm/pg-core";
import {
  AGENT_LIFECYCLES,
  BACKUP_TRIGGERS,
  CLAUDE_STATES,
  LOG_LEVELS,
  MAX_TASK_CHARS,
  PROJECT_NAME_PATTERN,
  SESSION_MODES,
  SESSION_NAME_RE,
  USER_SECRET_NAME_PATTERN,
} from "../../box/protocol.ts";

const bytea = customType<{ data: Buffer }>({ dataType: () => "bytea" });
const createdAt = () => timestamp("created_at", { withTimezone: true }).notNull().defaultNow();
const ts = (name: string) => timestamp(name, { withTimezone: true });
const inList = (column: string, values: readonly string[]) =>
  sql.raw(`${column} IN (${values.map((v) => `'${v}'`).join(", ")})`);

export const WORKSPACE_STATES = [
  "provisioning",
  "starting",
  "ready",
  "unhealthy",
  "hibernating",
  "hibernated",
  "waking",
  "destroying",
  "destroyed",
  "failed",
] as const;
// The agent's lifecycle values and the session-name rule are the agent API's (box/protocol.ts): one source.
export { AGENT_LIFECYCLES };
export const BUILD_TRANSITIONS = ["start", "stop", "destroy"] as const;
export const BUILD_REASONS = ["user", "autostop", "billing", "reconcile", "admin"] as const;
export const BUILD_STATUSES = ["pending", "running", "succeeded", "failed", "canceled"] as const;
export const SESSION_NAME_PATTERN = SESSION_NAME_RE.source;

/** People. `externalId` is the Clerk user id in hosted mode, `local:owner` in local mode. */
export const users = pgTable("users", {
  id: uuid("id").primaryKey().defaultRandom(),
  externalId: text("external_id").notNull().unique(),
  email: text("email"),
  isAdmin: boolean("is_admin").notNull().default(false),
  createdAt: createdAt(),
  lastSeenAt: ts("last_seen_at"),
  /** Signing out ends every web session issued before this instant (local mode's `berth_session`). */
  sessionsValidAfter: ts("sessions_valid_after"),
  /** A Berth tab of theirs is visible and focused until then (the web client renews it): no push meanwhile. */
  focusedUntil: ts("focused_until"),
});

/**
 * A user's personal API tokens (`berth_pat_…`) for the `berth` client and scripts: only a SHA-256 of the
 * secret is kept (the secret is shown once, at creation), with a short prefix to tell tokens apart in a
 * list. A token stops working when it expires or is revoked; revoked rows stay for the record.
 */
export const apiTokens = pgTable(
  "api_tokens",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    secretHash: bytea("secret_hash").notNull(),
    prefix: text("prefix").notNull(),
    createdAt: createdAt(),
    lastUsedAt: ts("last_used_at"),
    expiresAt: ts("expires_at").notNull(),
    revokedAt: ts("revoked_at"),
  },
  (t) => [
    uniqueIndex("api_tokens_secret_hash_uniq").on(t.secretHash),
    index("api_tokens_user_idx").on(t.userId, t.createdAt),
    check("api_tokens_name_check", sql`length(name) BETWEEN 1 AND 64`),
  ],
);

/**
 * A user's persistent box: one Pulumi stack (`ws-<id>`). 1:1 with a user by product rule, enforced in the
 * API rather than by a unique constraint, so going 1:n later needs no migration.
 */
export const workspaces = pgTable(
  "workspaces",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    ownerId: uuid("owner_id")
      .notNull()
      .references(() => users.id),
    name: text("name").notNull(),
    state: text("state", { enum: WORKSPACE_STATES }).notNull().default("provisioning"),
    driver: text("driver").notNull(),
    location: text("location").notNull(),
    serverType: text("server_type").notNull(),
    volumeSizeGb: integer("volume_size_gb").notNull(),
    stateChangedAt: ts("state_changed_at").notNull().defaultNow(),
    lastActivityAt: ts("last_activity_at"),
    /** Idle autostop (runtime/workers/autostop.ts): minutes of idleness before hibernating; null = never. */
    idleTimeoutMinutes: integer("idle_timeout_minutes").default(30),
    /** When the owner was warned of the coming autostop; cleared by activity or "keep running". */
    autostopWarnedAt: ts("autostop_warned_at"),
    createdAt: createdAt(),
    destroyedAt: ts("destroyed_at"),
  },
  (t) => [
    index("workspaces_owner_idx").on(t.ownerId),
    index("workspaces_state_idx").on(t.state),
    check("workspaces_state_check", inList("state", WORKSPACE_STATES)),
    check(
      "workspaces_idle_timeout_check",
      sql`${t.idleTimeoutMinutes} IS NULL OR ${t.idleTimeoutMinutes} BETWEEN 5 AND 1440`,
    ),
    check("workspaces_name_check", sql`char_length(${t.name}) BETWEEN 1 AND 64`),
    check("workspaces_volume_size_check", sql`${t.volumeSizeGb} BETWEEN 10 AND 10240`),
  ],
);

/** The workspace's persistent disk, which outlives every server (hibernate keeps it). */
export const workspaceVolumes = pgTable(
  "workspace_volumes",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    workspaceId: uuid("workspace_id")
      .notNull()
      .references(() => workspaces.id),
    providerVolumeId: text("provider_volume_id"),
    device: text("device"),
    sizeGb: integer("size_gb").notNull(),
    createdAt: createdAt(),
    deletedAt: ts("deleted_at"),
  },
  (t) => [
    uniqueIndex("workspace_volumes_live_uniq").on(t.workspaceId).where(sql`${t.deletedAt} IS NULL`),
    check("workspace_volumes_size_check", sql`${t.sizeGb} > 0`),
  ],
);

/**
 * One VM life: opened by a start build, closed by stop/destroy. Addresses stay server-side; the agent
 * token is stored only as a hash.
 */
export const workspaceInstances = pgTable(
  "workspace_instances",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    workspaceId: uuid("workspace_id")
      .notNull()
      .references(() => workspaces.id),
    buildId: uuid("build_id").references(() => workspaceBuilds.id),
    providerServerId: text("provider_server_id"),
    publicIp: text("public_ip"),
    tailnetIp: text("tailnet_ip"),
    agentTokenHash: text("agent_token_hash").notNull(),
    agentLifecycle: text("agent_lifecycle", { enum: AGENT_LIFECYCLES }).notNull().default("created"),
    agentVersion: text("agent_version"),
    agentLastError: text("agent_last_error"),
    /** Port of the box's ttyd-compatible terminal endpoint (7681 on a VM, dynamic in local mode). */
    terminalPort: integer("terminal_port"),
    /** Highest contiguous agent event seq applied: the exactly-once cursor of box/protocol.ts. */
    eventsAckedThrough: bigint("events_acked_through", { mode: "number" }).notNull().default(0),
    /**
     * Active health (runtime/health): consecutive failed and passed probe runs (the hysteresis counters),
     * the last run's per-check outcome (no addresses: it may be shown to the owner), and when the probe
     * job itself turned the workspace `unhealthy`. While that is set, only probes bring it back to `ready`:
     * heartbeats alone would flip a box that heartbeats but cannot be reached back and forth.
     */
    healthFailures: integer("health_failures").notNull().default(0),
    healthSuccesses: integer("health_successes").notNull().default(0),
    healthCheckedAt: ts("health_checked_at"),
    healthLast: jsonb("health_last"),
    probeUnhealthySince: ts("probe_unhealthy_since"),
    lastHeartbeatAt: ts("last_heartbeat_at"),
    readyAt: ts("ready_at"),
    startedAt: ts("started_at").notNull().defaultNow(),
    stoppedAt: ts("stopped_at"),
    /**
     * Billing's cursor (runtime/workers/metering.ts): every minute before this instant that the running
     * interval touches has its `meter_events` row. Null until the first tick.
     */
    meteredThrough: ts("metered_through"),
  },
  (t) => [
    uniqueIndex("workspace_instances_open_uniq").on(t.workspaceId).where(sql`${t.stoppedAt} IS NULL`),
    uniqueIndex("workspace_instances_agent_token_uniq").on(t.agentTokenHash),
    // Two live boxes never share a tailnet address (domain/agents/tailnet-claims.ts proves each before it is stored).
    uniqueIndex("workspace_instances_live_tailnet_ip_uniq")
      .on(t.tailnetIp)
      .where(sql`${t.stoppedAt} IS NULL AND ${t.tailnetIp} IS NOT NULL`),
    check("workspace_instances_lifecycle_check", inList("agent_lifecycle", AGENT_LIFECYCLES)),
    // The metering tick reads only instances with minutes still owed: open ones and closed ones not yet caught up.
    index("workspace_instances_unmetered_idx")
      .on(t.id)
      .where(
        sql`${t.stoppedAt} IS NULL OR ${t.meteredThrough} IS NULL OR ${t.meteredThrough} < ${t.stoppedAt}`,
      ),
    check(
      "workspace_instances_interval_check",
      sql`${t.stoppedAt} IS NULL OR ${t.stoppedAt} >= ${t.startedAt}`,
    ),
  ],
);

/** Every change to a workspace (start, stop, destroy) is a build; nothing mutates a stack outside one. */
export const workspaceBuilds = pgTable(
  "workspace_builds",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    workspaceId: uuid("workspace_id")
      .notNull()
      .references(() => workspaces.id),
    number: integer("number").notNull(),
    transition: text("transition", { enum: BUILD_TRANSITIONS }).notNull(),
    reason: text("reason", { enum: BUILD_REASONS }).notNull(),
    initiatorId: uuid("initiator_id").references(() => users.id),
    status: text("status", { enum: BUILD_STATUSES }).notNull().default("pending"),
    attempt: integer("attempt").notNull().default(0),
    /** Retries wait until this time (backoff); claims skip builds that are not due. */
    notBefore: ts("not_before").notNull().defaultNow(),
    /** Which control-plane process runs it, for operators reading a stuck build. */
    workerId: text("worker_id"),
    error: text("error"),
    cancelRequestedAt: ts("cancel_requested_at"),
    createdAt: createdAt(),
    startedAt: ts("started_at"),
    heartbeatAt: ts("heartbeat_at"),
    finishedAt: ts("finished_at"),
    /** W3C `traceparent` of the request that queued the build: the build's span continues its trace. */
    traceContext: text("trace_context"),
  },
  (t) => [
    uniqueIndex("workspace_builds_number_uniq").on(t.workspaceId, t.number),
    // At most one build in flight per workspace: the state machine relies on it, the database enforces it.
    uniqueIndex("workspace_builds_active_uniq")
      .on(t.workspaceId)
      .where(sql`${t.status} IN ('pending', 'running')`),
    index("workspace_builds_queue_idx").on(t.notBefore).where(sql`${t.status} = 'pending'`),
    check("workspace_builds_transition_check", inList("transition", BUILD_TRANSITIONS)),
    check("workspace_builds_reason_check", inList("reason", BUILD_REASONS)),
    check("workspace_builds_status_check", inList("status", BUILD_STATUSES)),
    check(
      "workspace_builds_finished_check",
      sql`(${t.status} IN ('succeeded','failed','canceled')) = (${t.finishedAt} IS NOT NULL)`,
    ),
  ],
);

/** A build's streamed log, one row per line; `seq` is the SSE event id clients resume from. */
export const workspaceBuildLogs = pgTable(
  "workspace_build_logs",
  {
    buildId: uuid("build_id")
      .notNull()
      .references(() => workspaceBuilds.id, { onDelete: "cascade" }),
    seq: integer("seq").notNull(),
    at: ts("at").notNull().defaultNow(),
    level: text("level").notNull(),
    stage: text("stage"),
    message: text("message").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.buildId, t.seq] }),
    check("workspace_build_logs_level_check", inList("level", ["info", "warn", "error", "stage"])),
  ],
);

/** One tmux session on the box per row; the name is ours and safe to hand to tmux. */
export const sessions = pgTable(
  "sessions",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    workspaceId: uuid("workspace_id")
      .notNull()
      .references(() => workspaces.id),
    name: text("name").notNull(),
    createdById: uuid("created_by_id").references(() => users.id),
    createdAt: createdAt(),
    lastActivityAt: ts("last_activity_at"),
    closedAt: ts("closed_at"),
    /** Engineer: a shell, Claude started by hand. Guided: Claude starts in `project` with `task` as its prompt. */
    mode: text("mode", { enum: SESSION_MODES }).notNull().default("engineer"),
    /** A folder name under user/projects (guided sessions). */
    project: text("project"),
    task: text("task"),
    /** What Claude Code is doing in it, from its hooks (box/notifications/claude-state.ts), and since when. */
    claudeState: text("claude_state", { enum: CLAUDE_STATES }),
    claudeStateDetail: text("claude_state_detail"),
    claudeStateSince: ts("claude_state_since"),
  },
  (t) => [
    uniqueIndex("sessions_open_name_uniq").on(t.workspaceId, t.name).where(sql`${t.closedAt} IS NULL`),
    check("sessions_name_check", sql.raw(`name ~ '${SESSION_NAME_PATTERN}'`)),
    check("sessions_mode_check", inList("mode", SESSION_MODES)),
    check("sessions_project_check", sql.raw(`project ~ '${PROJECT_NAME_PATTERN}'`)),
    check("sessions_task_check", sql.raw(`length(task) <= ${MAX_TASK_CHARS}`)),
    check(
      "sessions_claude_state_check",
      sql`${t.claudeState} IS NULL OR ${inList("claude_state", CLAUDE_STATES)}`,
    ),
  ],
);

/**
 * Terminal socket tokens (runtime/gateway/terminal): a row per minted token, spent atomically on first use
 * (`used_at`), so a token opens one socket, only for the user and session it names, and only if this
 * control plane issued it. Rows are deleted a few minutes after they expire.
 */
export const terminalTokens = pgTable(
  "terminal_tokens",
  {
    jti: uuid("jti").primaryKey(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    sessionId: uuid("session_id")
      .notNull()
      .references(() => sessions.id, { onDelete: "cascade" }),
    expiresAt: ts("expires_at").notNull(),
    usedAt: ts("used_at"),
    createdAt: createdAt(),
  },
  (t) => [index("terminal_tokens_expires_idx").on(t.expiresAt)],
);

/**
 * Open relayed terminals, one row per socket, shared by every control-plane replica so the per-session cap
 * holds across them. A replica refreshes `seen_at` for its own rows while they are open and deletes them on
 * close; rows of a replica that died stop being refreshed and no longer count once stale.
 */
export const terminalSockets = pgTable(
  "terminal_sockets",
  {
    id: uuid("id").primaryKey(),
    sessionId: uuid("session_id")
      .notNull()
      .references(() => sessions.id, { onDelete: "cascade" }),
    replicaId: text("replica_id").notNull(),
    openedAt: ts("opened_at").notNull().defaultNow(),
    seenAt: ts("seen_at").notNull().defaultNow(),
  },
  (t) => [
    index("terminal_sockets_session_idx").on(t.sessionId),
    index("terminal_sockets_replica_idx").on(t.replicaId),
  ],
);

/** A dev server on the box reachable through the preview proxy, detected by the agent or declared. */
export const previews = pgTable(
  "previews",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    workspaceId: uuid("workspace_id")
      .notNull()
      .references(() => workspaces.id),
    port: integer("port").notNull(),
    source: text("source", { enum: ["detected", "declared"] }).notNull(),
    process: text("process"),
    framework: text("framework"),
    share: text("share", { enum: ["owner", "link"] })
      .notNull()
      .default("owner"),
    /** Bumped on revoke so every signed share link minted before it stops working. */
    shareVersion: integer("share_version").notNull().default(0),
    createdAt: createdAt(),
    closedAt: ts("closed_at"),
  },
  (t) => [
    uniqueIndex("previews_open_port_uniq").on(t.workspaceId, t.port).where(sql`${t.closedAt} IS NULL`),
    check("previews_port_check", sql`${t.port} BETWEEN 1 AND 65535`),
    check("previews_source_check", inList("source", ["detected", "declared"])),
    check("previews_share_check", inList("share", ["owner", "link"])),
  ],
);

/**
 * One-time codes that sign a user into a preview's own host (`<previewId>.<preview-domain>`). Only a hash
 * is stored; redeeming deletes the row, so a code works once even with several replicas.
 */
export const previewCodes = pgTable(
  "preview_codes",
  {
    codeHash: text("code_hash").primaryKey(),
    previewId: uuid("preview_id")
      .notNull()
      .references(() => previews.id),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id),
    expiresAt: ts("expires_at").notNull(),
    createdAt: createdAt(),
  },
  (t) => [index("preview_codes_expires_idx").on(t.expiresAt)],
);

/** "Claude needs you": from Claude Code hooks or terminal OSC sequences, deduplicated per workspace. */
export const notifications = pgTable(
  "notifications",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id),
    workspaceId: uuid("workspace_id")
      .notNull()
      .references(() => workspaces.id),
    sessionId: uuid("session_id").references(() => sessions.id),
    kind: text("kind").notNull(),
    title: text("title").notNull(),
    body: text("body").notNull().default(""),
    dedupeKey: text("dedupe_key").notNull(),
    createdAt: createdAt(),
    readAt: ts("read_at"),
    /** Worth a Web Push (needs you, an error, a long turn finished, autostop warning); when one replica took it. */
    push: boolean("push").notNull().default(false),
    pushedAt: ts("pushed_at"),
  },
  (t) => [
    uniqueIndex("notifications_dedupe_uniq").on(t.workspaceId, t.dedupeKey),
    index("notifications_inbox_idx").on(t.userId, t.readAt, t.createdAt),
  ],
);

/** A browser's Web Push subscription (one per user and device); the endpoint is the push service's URL. */
export const pushSubscriptions = pgTable(
  "push_subscriptions",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    endpoint: text("endpoint").notNull(),
    /** The browser's keys (RFC 8291): public, not secret, but only its push service can use them. */
    p256dh: text("p256dh").notNull(),
    auth: text("auth").notNull(),
    device: text("device"),
    createdAt: createdAt(),
    lastSentAt: ts("last_sent_at"),
  },
  (t) => [
    uniqueIndex("push_subscriptions_endpoint_uniq").on(t.endpoint),
    index("push_subscriptions_user_idx").on(t.userId),
  ],
);

/**
 * Internal, idempotent billing minutes: the unique key makes generating a minute twice harmless, and it is
 * the `identifier` sent to Stripe.
 */
export const meterEvents = pgTable(
  "meter_events",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    workspaceInstanceId: uuid("workspace_instance_id")
      .notNull()
      .references(() => workspaceInstances.id),
    minuteTs: ts("minute_ts").notNull(),
    quantity: integer("quantity").notNull().default(1),
    createdAt: createdAt(),
    sentAt: ts("sent_at"),
    /** Delivery to Stripe (the outbox): tries so far, the backoff's next try, the last failure. */
    attempts: integer("attempts").notNull().default(0),
    notBefore: ts("not_before").notNull().defaultNow(),
    lastError: text("last_error"),
  },
  (t) => [
    uniqueIndex("meter_events_minute_uniq").on(t.workspaceInstanceId, t.minuteTs),
    index("meter_events_unsent_idx").on(t.notBefore, t.id).where(sql`${t.sentAt} IS NULL`),
    index("meter_events_minute_idx").on(t.minuteTs),
    check("meter_events_minute_check", sql`${t.minuteTs} = date_trunc('minute', ${t.minuteTs})`),
    check("meter_events_quantity_check", sql`${t.quantity} > 0`),
  ],
);

/**
 * A user's billing: their plan (null: BERTH_BILLING_DEFAULT_PLAN), their Stripe customer (created lazily the
 * first time one of their minutes is sent), and the subscription state Stripe's webhooks last reported.
 */
export const billingAccounts = pgTable("billing_accounts", {
  userId: uuid("user_id")
    .primaryKey()
    .references(() => users.id),
  plan: text("plan"),
  stripeCustomerId: text("stripe_customer_id").unique(),
  subscriptionId: text("subscription_id"),
  subscriptionStatus: text("subscription_status"),
  /** The `created` time of the newest subscription event applied: an older one arriving late is ignored. */
  subscriptionEventAt: ts("subscription_event_at"),
  createdAt: createdAt(),
  updatedAt: ts("updated_at").notNull().defaultNow(),
});

/** Stripe Billing Meters this control plane created: creation is not idempotent by name, so the id is kept. */
export const billingMeters = pgTable("billing_meters", {
  eventName: text("event_name").primaryKey(),
  stripeMeterId: text("stripe_meter_id").notNull(),
  createdAt: createdAt(),
});

/** Stripe webhook events already applied, by event id: a redelivery is acknowledged and not applied again. */
export const stripeWebhookEvents = pgTable("stripe_webhook_events", {
  id: text("id").primaryKey(),
  type: text("type").notNull(),
  receivedAt: ts("received_at").notNull().defaultNow(),
});

/** Seconds of voice transcription, per user and workspace, for quotas and billing. */
export const voiceUsage = pgTable(
  "voice_usage",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id),
    workspaceId: uuid("workspace_id").references(() => workspaces.id),
    seconds: integer("seconds").notNull(),
    startedAt: ts("started_at").notNull(),
    createdAt: createdAt(),
    /** Delivery to Stripe's voice-seconds meter, in the compute minutes' outbox (domain/billing/stripe-meter.ts). */
    sentAt: ts("sent_at"),
    attempts: integer("attempts").notNull().default(0),
    notBefore: ts("not_before").notNull().defaultNow(),
    lastError: text("last_error"),
  },
  (t) => [
    index("voice_usage_user_idx").on(t.userId, t.startedAt),
    index("voice_usage_unsent_idx").on(t.notBefore, t.id).where(sql`${t.sentAt} IS NULL`),
    check("voice_usage_seconds_check", sql`${t.seconds} >= 0`),
  ],
);

export const BACKUP_STATUSES = ["pending", "running", "succeeded", "failed"] as const;

/**
 * restic runs of a workspace and their outcome, one row per run (a restore's safety snapshot included).
 * `night` (UTC date) is set on nightly rows only, and unique per workspace: one nightly run per night,
 * however many replicas ask for it.
 */
export const backups = pgTable(
  "backups",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    workspaceId: uuid("workspace_id")
      .notNull()
      .references(() => workspaces.id),
    trigger: text("trigger", { enum: BACKUP_TRIGGERS }).notNull(),
    status: text("status", { enum: BACKUP_STATUSES }).notNull().default("pending"),
    /** The agent action that runs it. */
    actionId: uuid("action_id"),
    snapshotId: text("snapshot_id"),
    bytesAdded: bigint("bytes_added", { mode: "number" }),
    files: bigint("files", { mode: "number" }),
    durationMs: integer("duration_ms"),
    /** 0..1 while running. */
    progress: real("progress"),
    night: date("night"),
    error: text("error"),
    createdAt: createdAt(),
    finishedAt: ts("finished_at"),
  },
  (t) => [
    index("backups_workspace_idx").on(t.workspaceId, t.createdAt),
    uniqueIndex("backups_nightly_once_idx").on(t.workspaceId, t.night).where(sql`${t.trigger} = 'nightly'`),
    check("backups_trigger_check", inList("trigger", BACKUP_TRIGGERS)),
    check("backups_status_check", inList("status", BACKUP_STATUSES)),
    check("backups_night_check", sql`(trigger = 'nightly') = (night IS NOT NULL)`),
  ],
);

/** A named secret of a workspace, sealed by the secret box under the key `keyId` names. */
const sealedNamedSecret = () => ({
  workspaceId: uuid("workspace_id")
    .notNull()
    .references(() => workspaces.id),
  name: text("name").notNull(),
  keyId: text("key_id").notNull(),
  sealed: bytea("sealed").notNull(),
  createdAt: createdAt(),
  updatedAt: ts("updated_at").notNull().defaultNow(),
});

/**
 * Per-workspace secrets (ttyd credential, restic password, R2 keys), AES-256-GCM sealed by the secret box;
 * `keyId` names the key so keys can rotate.
 */
export const workspaceSecrets = pgTable("workspace_secrets", sealedNamedSecret(), (t) => [
  primaryKey({ columns: [t.workspaceId, t.name] }),
  check("workspace_secrets_name_check", sql.raw(`name ~ '^[a-z0-9-]{1,64}$'`)),
]);

/**
 * The user's own named secrets of a workspace (API keys, tokens), kept apart from the workspace's
 * infrastructure secrets above: the agent receives these, in memory, and injects them into the
 * environment of new tmux sessions. Sealed with a context naming the table, workspace and name.
 */
export const userSecrets = pgTable("user_secrets", sealedNamedSecret(), (t) => [
  primaryKey({ columns: [t.workspaceId, t.name] }),
  check("user_secrets_name_check", sql.raw(`name ~ '${USER_SECRET_NAME_PATTERN}'`)),
]);

/** Append-only record of sensitive actions: who did what to which resource, from which request. */
export const auditLog = pgTable(
  "audit_log",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    at: ts("at").notNull().defaultNow(),
    actorId: uuid("actor_id").references(() => users.id),
    actorKind: text("actor_kind", { enum: ["user", "system", "agent", "operator"] }).notNull(),
    action: text("action").notNull(),
    targetType: text("target_type").notNull(),
    targetId: text("target_id"),
    requestId: text("request_id"),
    ip: text("ip"),
    details: jsonb("details").$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [
    index("audit_log_target_idx").on(t.targetType, t.targetId, t.at),
    index("audit_log_actor_idx").on(t.actorId, t.at),
    check("audit_log_actor_kind_check", inList("actor_kind", ["user", "system", "agent", "operator"])),
  ],
);

/** rate-limiter-flexible's Postgres store; the shape is the library's own (`tableCreated: true`). */
export const rateLimits = pgTable("rate_limits", {
  key: varchar("key", { length: 255 }).primaryKey(),
  points: integer("points").notNull().default(0),
  expire: bigint("expire", { mode: "number" }),
});

/**
 * Work the control plane wants a box agent to do (type keys into a pane, run a backup), delivered on the
 * heartbeat response until the agent reports it done.
 */
export const agentActions = pgTable(
  "agent_actions",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    workspaceId: uuid("workspace_id")
      .notNull()
      .references(() => workspaces.id),
    kind: text("kind", { enum: ["keys", "backup", "restore", "onboard"] }).notNull(),
    payload: jsonb("payload").$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
    completedAt: ts("completed_at"),
    ok: boolean("ok"),
    error: text("error"),
  },
  (t) => [
    index("agent_actions_pending_idx").on(t.workspaceId, t.createdAt).where(sql`${t.completedAt} IS NULL`),
    check("agent_actions_kind_check", inList("kind", ["keys", "backup", "restore", "onboard"])),
  ],
);

/** A box's figures from one heartbeat, as both telemetry tables keep them (null: not reported). */
const telemetryFigures = () => ({
  loadAvg1: real("load_avg1"),
  memTotalBytes: bigint("mem_total_bytes", { mode: "number" }),
  memAvailableBytes: bigint("mem_available_bytes", { mode: "number" }),
  diskTotalBytes: bigint("disk_total_bytes", { mode: "number" }),
  diskFreeBytes: bigint("disk_free_bytes", { mode: "number" }),
});

/**
 * Box telemetry (issue 23): the latest load, memory and volume disk sample of each workspace's box, from
 * its agent's heartbeats, and the disk-nearly-full alert's state. One row per workspace (the volume is the
 * workspace's, whichever instance reports). `diskWarnedAt` is set when the owner was told the disk crossed
 * the threshold and cleared once usage falls below it minus the hysteresis: stored here, not in memory, so
 * a restarted control plane neither repeats the notification nor forgets to re-arm it.
 */
export const boxTelemetry = pgTable("box_telemetry", {
  workspaceId: uuid("workspace_id")
    .primaryKey()
    .references(() => workspaces.id),
  instanceId: uuid("instance_id")
    .notNull()
    .references(() => workspaceInstances.id),
  sampledAt: ts("sampled_at").notNull(),
  ...telemetryFigures(),
  diskWarnedAt: ts("disk_warned_at"),
});

/**
 * The short history behind the telemetry graphs: one row per workspace per minute (the minute's latest
 * sample wins), kept 24 h. Pruned on every insert for that workspace, and hourly for all (destroyed ones).
 */
export const boxTelemetryHistory = pgTable(
  "box_telemetry_history",
  {
    workspaceId: uuid("workspace_id")
      .notNull()
      .references(() => workspaces.id),
    minute: ts("minute").notNull(),
    instanceId: uuid("instance_id")
      .notNull()
      .references(() => workspaceInstances.id),
    ...telemetryFigures(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.minute] }),
    index("box_telemetry_history_minute_idx").on(t.minute),
  ],
);

export const LOG_SOURCES = ["agent", "control-plane"] as const;
export { LOG_LEVELS };

/**
 * The central log store: box agents' shipped lines and the control plane's warnings and workspace lines,
 * secrets redacted (store/logs.ts). The migration partitions it by day on `time` (RANGE), which Drizzle
 * cannot declare; retention drops whole partitions.
 */
export const logEntries = pgTable(
  "log_entries",
  {
    id: bigserial("id", { mode: "number" }).notNull(),
    time: ts("time").notNull(),
    workspaceId: uuid("workspace_id"),
    instanceId: uuid("instance_id"),
    source: text("source", { enum: LOG_SOURCES }).notNull(),
    level: text("level", { enum: LOG_LEVELS }).notNull(),
    message: text("message").notNull(),
    fields: jsonb("fields").$type<Record<string, unknown>>().notNull().default({}),
    traceId: text("trace_id"),
  },
  (t) => [
    primaryKey({ columns: [t.time, t.id] }),
    index("log_entries_workspace_time_idx").on(t.workspaceId, t.time.desc(), t.id.desc()),
    index("log_entries_time_idx").on(t.time.desc(), t.id.desc()),
    check("log_entries_source_check", inList("source", LOG_SOURCES)),
    check("log_entries_level_check", inList("level", LOG_LEVELS)),
  ],
);
