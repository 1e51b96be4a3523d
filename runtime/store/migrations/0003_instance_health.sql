ALTER TABLE "workspace_instances" ADD COLUMN "health_failures" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "workspace_instances" ADD COLUMN "health_successes" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "workspace_instances" ADD COLUMN "health_checked_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "workspace_instances" ADD COLUMN "health_last" jsonb;--> statement-breakpoint
ALTER TABLE "workspace_instances" ADD COLUMN "probe_unhealthy_since" timestamp with time zone;