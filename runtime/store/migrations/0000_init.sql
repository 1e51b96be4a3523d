CREATE TABLE "agent_actions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"workspace_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"payload" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"completed_at" timestamp with time zone,
	"ok" boolean,
	"error" text,
	CONSTRAINT "agent_actions_kind_check" CHECK (kind IN ('keys', 'backup'))
);
--> statement-breakpoint
CREATE TABLE "audit_log" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor_id" uuid,
	"actor_kind" text NOT NULL,
	"action" text NOT NULL,
	"target_type" text NOT NULL,
	"target_id" text,
	"request_id" text,
	"ip" text,
	"details" jsonb DEFAULT '{}'::jsonb NOT NULL,
	CONSTRAINT "audit_log_actor_kind_check" CHECK (actor_kind IN ('user', 'system', 'agent', 'operator'))
);
--> statement-breakpoint
CREATE TABLE "backups" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"workspace_id" uuid NOT NULL,
	"trigger" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"snapshot_id" text,
	"bytes_added" bigint,
	"error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	CONSTRAINT "backups_trigger_check" CHECK (trigger IN ('nightly', 'pre_stop', 'manual', 'pre_restore')),
	CONSTRAINT "backups_status_check" CHECK (status IN ('pending', 'running', 'succeeded', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "meter_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"workspace_instance_id" uuid NOT NULL,
	"minute_ts" timestamp with time zone NOT NULL,
	"quantity" integer DEFAULT 1 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"sent_at" timestamp with time zone,
	CONSTRAINT "meter_events_minute_check" CHECK ("meter_events"."minute_ts" = date_trunc('minute', "meter_events"."minute_ts")),
	CONSTRAINT "meter_events_quantity_check" CHECK ("meter_events"."quantity" > 0)
);
--> statement-breakpoint
CREATE TABLE "notifications" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"workspace_id" uuid NOT NULL,
	"session_id" uuid,
	"kind" text NOT NULL,
	"title" text NOT NULL,
	"body" text DEFAULT '' NOT NULL,
	"dedupe_key" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"read_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "previews" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"workspace_id" uuid NOT NULL,
	"port" integer NOT NULL,
	"source" text NOT NULL,
	"process" text,
	"framework" text,
	"share" text DEFAULT 'owner' NOT NULL,
	"share_version" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"closed_at" timestamp with time zone,
	CONSTRAINT "previews_port_check" CHECK ("previews"."port" BETWEEN 1 AND 65535),
	CONSTRAINT "previews_source_check" CHECK (source IN ('detected', 'declared')),
	CONSTRAINT "previews_share_check" CHECK (share IN ('owner', 'link'))
);
--> statement-breakpoint
CREATE TABLE "rate_limits" (
	"key" varchar(255) PRIMARY KEY NOT NULL,
	"points" integer DEFAULT 0 NOT NULL,
	"expire" bigint
);
--> statement-breakpoint
CREATE TABLE "sessions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"workspace_id" uuid NOT NULL,
	"name" text NOT NULL,
	"created_by_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_activity_at" timestamp with time zone,
	"closed_at" timestamp with time zone,
	CONSTRAINT "sessions_name_check" CHECK (name ~ '^[a-z0-9-]{1,32}$')
);
--> statement-breakpoint
CREATE TABLE "users" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"external_id" text NOT NULL,
	"email" text,
	"is_admin" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_seen_at" timestamp with time zone,
	CONSTRAINT "users_external_id_unique" UNIQUE("external_id")
);
--> statement-breakpoint
CREATE TABLE "voice_usage" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"user_id" uuid NOT NULL,
	"workspace_id" uuid,
	"seconds" integer NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "voice_usage_seconds_check" CHECK ("voice_usage"."seconds" >= 0)
);
--> statement-breakpoint
CREATE TABLE "workspace_build_logs" (
	"build_id" uuid NOT NULL,
	"seq" integer NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"level" text NOT NULL,
	"stage" text,
	"message" text NOT NULL,
	CONSTRAINT "workspace_build_logs_build_id_seq_pk" PRIMARY KEY("build_id","seq"),
	CONSTRAINT "workspace_build_logs_level_check" CHECK (level IN ('info', 'warn', 'error', 'stage'))
);
--> statement-breakpoint
CREATE TABLE "workspace_builds" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"workspace_id" uuid NOT NULL,
	"number" integer NOT NULL,
	"transition" text NOT NULL,
	"reason" text NOT NULL,
	"initiator_id" uuid,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempt" integer DEFAULT 0 NOT NULL,
	"not_before" timestamp with time zone DEFAULT now() NOT NULL,
	"worker_id" text,
	"error" text,
	"cancel_requested_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"heartbeat_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	CONSTRAINT "workspace_builds_transition_check" CHECK (transition IN ('start', 'stop', 'destroy')),
	CONSTRAINT "workspace_builds_reason_check" CHECK (reason IN ('user', 'autostop', 'billing', 'reconcile', 'admin')),
	CONSTRAINT "workspace_builds_status_check" CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceled')),
	CONSTRAINT "workspace_builds_finished_check" CHECK (("workspace_builds"."status" IN ('succeeded','failed','canceled')) = ("workspace_builds"."finished_at" IS NOT NULL))
);
--> statement-breakpoint
CREATE TABLE "workspace_instances" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"workspace_id" uuid NOT NULL,
	"build_id" uuid,
	"provider_server_id" text,
	"public_ip" text,
	"tailnet_ip" text,
	"agent_token_hash" text NOT NULL,
	"agent_lifecycle" text DEFAULT 'created' NOT NULL,
	"agent_version" text,
	"agent_last_error" text,
	"terminal_port" integer,
	"events_acked_through" bigint DEFAULT 0 NOT NULL,
	"last_heartbeat_at" timestamp with time zone,
	"ready_at" timestamp with time zone,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"stopped_at" timestamp with time zone,
	CONSTRAINT "workspace_instances_lifecycle_check" CHECK (agent_lifecycle IN ('created', 'starting', 'ready', 'start_error', 'start_timeout', 'shutting_down', 'off')),
	CONSTRAINT "workspace_instances_interval_check" CHECK ("workspace_instances"."stopped_at" IS NULL OR "workspace_instances"."stopped_at" >= "workspace_instances"."started_at")
);
--> statement-breakpoint
CREATE TABLE "workspace_secrets" (
	"workspace_id" uuid NOT NULL,
	"name" text NOT NULL,
	"key_id" text NOT NULL,
	"sealed" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "workspace_secrets_workspace_id_name_pk" PRIMARY KEY("workspace_id","name"),
	CONSTRAINT "workspace_secrets_name_check" CHECK (name ~ '^[a-z0-9-]{1,64}$')
);
--> statement-breakpoint
CREATE TABLE "workspace_volumes" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"workspace_id" uuid NOT NULL,
	"provider_volume_id" text,
	"device" text,
	"size_gb" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deleted_at" timestamp with time zone,
	CONSTRAINT "workspace_volumes_size_check" CHECK ("workspace_volumes"."size_gb" > 0)
);
--> statement-breakpoint
CREATE TABLE "workspaces" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"owner_id" uuid NOT NULL,
	"name" text NOT NULL,
	"state" text DEFAULT 'provisioning' NOT NULL,
	"driver" text NOT NULL,
	"location" text NOT NULL,
	"server_type" text NOT NULL,
	"volume_size_gb" integer NOT NULL,
	"state_changed_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_activity_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"destroyed_at" timestamp with time zone,
	CONSTRAINT "workspaces_state_check" CHECK (state IN ('provisioning', 'starting', 'ready', 'unhealthy', 'hibernating', 'hibernated', 'waking', 'destroying', 'destroyed', 'failed')),
	CONSTRAINT "workspaces_name_check" CHECK (char_length("workspaces"."name") BETWEEN 1 AND 64),
	CONSTRAINT "workspaces_volume_size_check" CHECK ("workspaces"."volume_size_gb" BETWEEN 10 AND 10240)
);
--> statement-breakpoint
ALTER TABLE "agent_actions" ADD CONSTRAINT "agent_actions_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "audit_log" ADD CONSTRAINT "audit_log_actor_id_users_id_fk" FOREIGN KEY ("actor_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "backups" ADD CONSTRAINT "backups_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "meter_events" ADD CONSTRAINT "meter_events_workspace_instance_id_workspace_instances_id_fk" FOREIGN KEY ("workspace_instance_id") REFERENCES "public"."workspace_instances"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "notifications" ADD CONSTRAINT "notifications_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "notifications" ADD CONSTRAINT "notifications_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "notifications" ADD CONSTRAINT "notifications_session_id_sessions_id_fk" FOREIGN KEY ("session_id") REFERENCES "public"."sessions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "previews" ADD CONSTRAINT "previews_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_created_by_id_users_id_fk" FOREIGN KEY ("created_by_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "voice_usage" ADD CONSTRAINT "voice_usage_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "voice_usage" ADD CONSTRAINT "voice_usage_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workspace_build_logs" ADD CONSTRAINT "workspace_build_logs_build_id_workspace_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."workspace_builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workspace_builds" ADD CONSTRAINT "workspace_builds_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workspace_builds" ADD CONSTRAINT "workspace_builds_initiator_id_users_id_fk" FOREIGN KEY ("initiator_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workspace_instances" ADD CONSTRAINT "workspace_instances_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workspace_instances" ADD CONSTRAINT "workspace_instances_build_id_workspace_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."workspace_builds"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workspace_secrets" ADD CONSTRAINT "workspace_secrets_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workspace_volumes" ADD CONSTRAINT "workspace_volumes_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workspaces" ADD CONSTRAINT "workspaces_owner_id_users_id_fk" FOREIGN KEY ("owner_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "agent_actions_pending_idx" ON "agent_actions" USING btree ("workspace_id","created_at") WHERE "agent_actions"."completed_at" IS NULL;--> statement-breakpoint
CREATE INDEX "audit_log_target_idx" ON "audit_log" USING btree ("target_type","target_id","at");--> statement-breakpoint
CREATE INDEX "audit_log_actor_idx" ON "audit_log" USING btree ("actor_id","at");--> statement-breakpoint
CREATE INDEX "backups_workspace_idx" ON "backups" USING btree ("workspace_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "meter_events_minute_uniq" ON "meter_events" USING btree ("workspace_instance_id","minute_ts");--> statement-breakpoint
CREATE INDEX "meter_events_unsent_idx" ON "meter_events" USING btree ("created_at") WHERE "meter_events"."sent_at" IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "notifications_dedupe_uniq" ON "notifications" USING btree ("workspace_id","dedupe_key");--> statement-breakpoint
CREATE INDEX "notifications_inbox_idx" ON "notifications" USING btree ("user_id","read_at","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "previews_open_port_uniq" ON "previews" USING btree ("workspace_id","port") WHERE "previews"."closed_at" IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "sessions_open_name_uniq" ON "sessions" USING btree ("workspace_id","name") WHERE "sessions"."closed_at" IS NULL;--> statement-breakpoint
CREATE INDEX "voice_usage_user_idx" ON "voice_usage" USING btree ("user_id","started_at");--> statement-breakpoint
CREATE UNIQUE INDEX "workspace_builds_number_uniq" ON "workspace_builds" USING btree ("workspace_id","number");--> statement-breakpoint
CREATE UNIQUE INDEX "workspace_builds_active_uniq" ON "workspace_builds" USING btree ("workspace_id") WHERE "workspace_builds"."status" IN ('pending', 'running');--> statement-breakpoint
CREATE INDEX "workspace_builds_queue_idx" ON "workspace_builds" USING btree ("not_before") WHERE "workspace_builds"."status" = 'pending';--> statement-breakpoint
CREATE UNIQUE INDEX "workspace_instances_open_uniq" ON "workspace_instances" USING btree ("workspace_id") WHERE "workspace_instances"."stopped_at" IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "workspace_instances_agent_token_uniq" ON "workspace_instances" USING btree ("agent_token_hash");--> statement-breakpoint
CREATE UNIQUE INDEX "workspace_volumes_live_uniq" ON "workspace_volumes" USING btree ("workspace_id") WHERE "workspace_volumes"."deleted_at" IS NULL;--> statement-breakpoint
CREATE INDEX "workspaces_owner_idx" ON "workspaces" USING btree ("owner_id");--> statement-breakpoint
CREATE INDEX "workspaces_state_idx" ON "workspaces" USING btree ("state");