ALTER TABLE "workspace_builds" ADD COLUMN "trace_context" text;--> statement-breakpoint
CREATE TABLE "log_entries" (
	"id" bigserial NOT NULL,
	"time" timestamp with time zone NOT NULL,
	"workspace_id" uuid,
	"instance_id" uuid,
	"source" text NOT NULL,
	"level" text NOT NULL,
	"message" text NOT NULL,
	"fields" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"trace_id" text,
	CONSTRAINT "log_entries_time_id_pk" PRIMARY KEY("time","id"),
	CONSTRAINT "log_entries_source_check" CHECK (source IN ('agent', 'control-plane')),
	CONSTRAINT "log_entries_level_check" CHECK (level IN ('trace', 'debug', 'info', 'warn', 'error', 'fatal'))
) PARTITION BY RANGE ("time");
--> statement-breakpoint
CREATE INDEX "log_entries_workspace_time_idx" ON "log_entries" USING btree ("workspace_id","time" DESC,"id" DESC);--> statement-breakpoint
CREATE INDEX "log_entries_time_idx" ON "log_entries" USING btree ("time" DESC,"id" DESC);
